"""Running ``lrp explain`` over many images: output planning, the threaded batch loop, typed report
entries, report.json, ``--resume``, and the process's allocator setting."""
