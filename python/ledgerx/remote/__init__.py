"""Beyond one machine (docs/scale.md): ship the log to S3-compatible object storage
(`ship`), and index a shipped log on another host (`fetch`). Needs the `ledgerx[s3]` extra."""

from ledgerx.remote.fetch import FetchReport, rebuild_from_remote, sync_remote
from ledgerx.remote.ship import Shipper, ShipReport, ship
from ledgerx.remote.store import RemoteError, open_store

__all__ = [
    "FetchReport",
    "RemoteError",
    "ShipReport",
    "Shipper",
    "open_store",
    "rebuild_from_remote",
    "ship",
    "sync_remote",
]
