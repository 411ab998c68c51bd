"""Sentences for the speech tests: everyday speech, bilabial and labiodental clusters, numbers."""

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Peter Piper picked a peck of pickled peppers.",
    "Bob bought a big blue boat by the beach.",
    "My mum made marmalade in May.",
    "Five fine friends found a van full of fresh vegetables.",
    "Have you ever seen a very vivid vision of the future?",
    "Please pass the bread and butter, Barbara.",
    "We will meet at 10:30 pm on the 21st of March.",
    "It costs $12.50, about 30% more than last year.",
    "Hello there! How are you doing today?",
    "Improbable as it may appear, the puppy climbed up the empty map.",
    "She sells sea shells by the sea shore.",
    "Comfort and warmth, above all, matter most.",
    "Thank you very much for everything, my friend.",
    "A bright moon hung above the calm, black water.",
    "The lamp flickered, then the film began with a bang.",
    "Between you and me, this plan will probably work.",
    "Sphinx of black quartz, judge my vow.",
    "Mr. Brown moved to Boston in 1998, i.e. before the boom.",
    "Maybe the baby wants a bottle of warm milk.",
]
