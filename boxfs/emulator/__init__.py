"""A faithful local Box API server.

A product of its own: it imports nothing from the boxfs client, so it can serve any Box
client (box_sdk_gen, rclone, other SDKs) that lets its base URLs be changed.
"""

from boxfs.emulator.app import BoxEmulator
from boxfs.emulator.faults import RequestLog, RequestRecord

__all__ = ["BoxEmulator", "RequestLog", "RequestRecord"]
