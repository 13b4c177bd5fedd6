"""``python -m inference_runtime``: the same as the ``inference-runtime`` console script."""

from inference_runtime.cli import main

if __name__ == "__main__":
    main()
