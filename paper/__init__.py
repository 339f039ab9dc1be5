"""The paper's analysis: its published figures, the zero-shot heuristics, and the tables beside a run's figures."""
