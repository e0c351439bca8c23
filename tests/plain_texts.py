"""Plain English sentences for the plain-text metric tests (``{"text": ...}`` datasets)."""

TEXTS = [
    "Mary and John went to the store. John gave a drink to Mary.",
    "The cat sat on the mat and the dog sat on the rug.",
    "When Tom and Anna arrived at the park, Anna gave a ball to Tom.",
    "Alice and Bob went to the school. Bob gave a book to Alice.",
    "After the meeting, Sarah and James went to the office.",
    "The garden was quiet in the morning and loud at night.",
]
