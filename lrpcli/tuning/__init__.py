"""`lrp tune`: search composites and their hyperparameters for faithfulness."""
