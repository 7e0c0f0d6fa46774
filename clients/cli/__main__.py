"""`python -m clients.cli`, the same as the `baton` console script."""

from clients.cli.app import main

if __name__ == "__main__":
    main()
