"""Canonical expression classes and each dataset's label codes.

Every dataset is mapped onto the same seven canonical classes, in this order, so that class
index i means the same expression everywhere (tensors, tables, confusion matrices).
"""

CLASSES = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")
NUM_CLASSES = len(CLASSES)
CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}

# RAF-DB basic emotions, EmoLabel/list_patition_label.txt: codes 1..7.
RAFDB_CODES = {1: "surprise", 2: "fear", 3: "disgust", 4: "happiness", 5: "sadness", 6: "anger", 7: "neutral"}

# AffectNet Manually_Annotated_file_lists/*.csv `expression` column: codes 0..6 are kept.
AFFECTNET_CODES = {0: "neutral", 1: "happiness", 2: "sadness", 3: "surprise", 4: "fear", 5: "disgust", 6: "anger"}
# Codes 7..10 are not basic expressions; they are dropped and counted by reason.
AFFECTNET_DROPPED = {7: "contempt", 8: "none", 9: "uncertain", 10: "non-face"}

# CAER-S class folders.
CAERS_FOLDERS = {
    "Angry": "anger", "Disgust": "disgust", "Fear": "fear", "Happy": "happiness",
    "Neutral": "neutral", "Sad": "sadness", "Surprise": "surprise",
}
