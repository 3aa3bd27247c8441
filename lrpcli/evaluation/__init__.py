"""Measuring explanations: pixel flipping and AOPC (:mod:`.flipping`), the plot (:mod:`.plot`) and
evaluation.json (:mod:`.document`)."""
