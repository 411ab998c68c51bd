"""Word lists per espeak-ng language: each table must cover every phoneme espeak-ng emits."""

WORDLISTS = {
    "en": "the quick brown fox jumps over a lazy dog while judges vow thought measure ring "
    "church yellow beige azure hour cure fire poor near care oil boy cow",
    "fr": "bonjour le monde voici un exemple avec des mots comme chat chien oiseau grenouille "
    "huit nuit lundi jeudi brun vin pain bon fille soleil feuille garçon agneau vingt deux "
    "œuvre peur heureux jaune rouge",
    "de": "guten Morgen die Welt ist schön über fünf Bäume zwölf Boxkämpfer jagen Viktor quer "
    "durch Sylt Pfeffer Zeitung ich ach Buch Löwe Häuser Eule Mädchen singen",
    "es": "hola mundo el veloz murciélago hindú comía feliz cardillo y kiwi la cigüeña tocaba "
    "el saxofón detrás del palenque de paja niño llama perro gente agua cuchara",
    "it": "ciao mondo quel fez sghembo copre davanti gli occhi pesce figlio giorno cena "
    "zucchero pizza ragazzo gnocchi sciarpa chiesa ghiaccio",
    "fi": "hyvää päivää maailma törkylempijävongahdus öljy yö kuusi sauna hääpäivä "
    "kylä pyörä lehti rengas kenkä",
    "pt": "olá mundo um pequeno jabuti xereta viu dez cegonhas felizes pão mãe coração "
    "filho ninho chave lhama rato carro",
    "nl": "hallo wereld pa's wijze lynx bezag vroom het fikse aquaduct schip huis uit "
    "goed reus jij leeuw",
    "sv": "hej världen flygande bäckasiner söka hwila på mjuka tuvor sjuk kjol tjugo stjärna skön",
    "pl": "dzień dobry świecie pchnąć w tę łódź jeża lub ośm skrzyń fig szczęście żółw rzeka chleb",
    "ru": "привет мир съешь же ещё этих мягких французских булок да выпей чаю щука",
}
