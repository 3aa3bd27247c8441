"""Measuring explanations: pixel flipping, AOPC and SRG (:mod:`.flipping`, :mod:`.perturb`,
:mod:`.occlusion`), statistics over images (:mod:`.summary`, :mod:`.stats`, :mod:`.comparisons`),
the model-randomisation check (:mod:`.sanity`), the plot (:mod:`.plot`), the tables
(:mod:`.tables`) and evaluation.json (:mod:`.document`)."""
