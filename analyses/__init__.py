"""The paper's analyses over `Trace`s (token probabilities, JSD, stages, skips, trajectories).

Each analysis gets its own module here; see issue 3. Nothing here touches a model.
"""
