"""The model repository's contract, shared by the side that writes it (`export/`) and the side
that reads it (`service/`): file names, the graph's tensor names, the card, provider names.

Neither side imports the other; this package is their only common ground, and it imports
neither torch nor anything of theirs. docs/model-repository.md describes the same contract
for people and points here for the exact types.
"""
