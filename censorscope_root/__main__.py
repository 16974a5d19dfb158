"""``python -m censorscope``: the same as the ``censorscope`` command."""

from censorscope.measure.cli import main

if __name__ == "__main__":
    main()
