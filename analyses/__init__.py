"""The paper's analyses over `Trace`s, each module computing tidy tables and drawing figures.

token_probs (Fig. 2/3), divergence (Fig. 4), stages (critical / mutation layers), skip (Fig. 5),
trajectories (Fig. 6/7), compare_llm (section 6), hallucination (object words), intervals
(bootstrap confidence intervals of rates and their differences). Only the skip
experiments (and `compare_llm.image_and_text_traces`) run a model; the rest read Traces.
"""
