"""``python -m lrpcli``: the same as the ``lrp`` command."""

from lrpcli.cli import main

if __name__ == "__main__":
    main()
