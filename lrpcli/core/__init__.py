"""The LRP engine (torch only; imports nothing of lrpcli outside this package): the program a model
is canonized into, rules, composites, the explainer and the conservation ledger."""
