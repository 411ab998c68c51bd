"""The rig model: ARKit names, rig profiles (validated data files), sparse mappings."""
