"""``python -m qpuflow.emulator --store DIR [--port N] [--options JSON]``: run the emulator."""

from qpuflow.emulator.server import main

if __name__ == "__main__":
    main()
