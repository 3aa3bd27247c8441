"""``lrp audit``: Spectral Relevance Analysis (SpRAy, Lapuschkin et al. 2019) over an earlier
``lrp explain`` run, and the static HTML gallery (``index.html``) of a run or an audit.

Modules: :mod:`~lrpcli.audit.maps` (the run's report and its saved relevance, streamed and
downsized), :mod:`~lrpcli.audit.where` (where an image's positive relevance lies: border,
quadrants, outside a bounding box), :mod:`~lrpcli.audit.spray` (k-nearest-neighbour affinity,
spectral embedding, eigengap, k-means), :mod:`~lrpcli.audit.analyse` (per class: the audit),
:mod:`~lrpcli.audit.document` (``audit.json``, the cluster lines, the pictures),
:mod:`~lrpcli.audit.gallery` (``index.html``).
"""
