"""`mmlens/heldout`: an experiment in which colour is never supervised for the objects with a
language-model colour prior (issue 27), so that the frozen SmolLM2's prior can win.

Reuses `mmlens.zoo.priors` (scenes, text, language model, training machinery); only the data
differ. See `data.py` for what is held out, `train.py` and `evaluate.py` for the two commands.
"""
