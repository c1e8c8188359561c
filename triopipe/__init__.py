"""triopipe: a Redis client for structured concurrency, built for pipelining.

See https://triopipe.readthedocs.io/ for the guides; the public names are all
importable from here.
"""

from __future__ import annotations

# The blocking facade, as ``triopipe.sync`` after a plain ``import triopipe``.
from . import sync as sync
from ._batch import Batch as Batch
from ._batch import Pending as Pending
from ._batch import Transaction as Transaction
from ._client import Client as Client
from ._client import open_client as open_client
from ._cluster import ClusterClient as ClusterClient
from ._cluster import open_cluster_client as open_cluster_client
from ._config import ClientConfig as ClientConfig
from ._consumer import StreamConsumer as StreamConsumer
from ._consumer import StreamEntry as StreamEntry
from ._exceptions import AskError as AskError
from ._exceptions import AuthenticationError as AuthenticationError
from ._exceptions import BusyLoadingError as BusyLoadingError
from ._exceptions import ClusterDownError as ClusterDownError
from ._exceptions import CommandNotAllowedError as CommandNotAllowedError
from ._exceptions import ConnectError as ConnectError
from ._exceptions import ConnectionLostError as ConnectionLostError
from ._exceptions import CrossSlotError as CrossSlotError
from ._exceptions import ExecAbortError as ExecAbortError
from ._exceptions import MaxClientsError as MaxClientsError
from ._exceptions import MessagesLostError as MessagesLostError
from ._exceptions import MovedError as MovedError
from ._exceptions import NoPermissionError as NoPermissionError
from ._exceptions import NoScriptError as NoScriptError
from ._exceptions import NoShardError as NoShardError
from ._exceptions import OutOfMemoryError as OutOfMemoryError
from ._exceptions import ProtocolError as ProtocolError
from ._exceptions import ReadOnlyError as ReadOnlyError
from ._exceptions import RedirectError as RedirectError
from ._exceptions import ResponseError as ResponseError
from ._exceptions import TransportError as TransportError
from ._exceptions import TriopipeError as TriopipeError
from ._exceptions import TryAgainError as TryAgainError
from ._exceptions import UnknownCommandError as UnknownCommandError
from ._exceptions import WatchError as WatchError
from ._exceptions import WrongTypeError as WrongTypeError
from ._fanout import FanOutBatch as FanOutBatch
from ._fanout import ShardedTransaction as ShardedTransaction
from ._observe import Observation as Observation
from ._observe import Observer as Observer
from ._pubsub import Gap as Gap
from ._pubsub import Message as Message
from ._scripts import Script as Script
from ._sentinel import SentinelClient as SentinelClient
from ._sentinel import open_sentinel_client as open_sentinel_client
from ._sharded import ShardedClient as ShardedClient
from ._sharded import open_sharded_client as open_sharded_client
from ._statistics import ClientStatistics as ClientStatistics
from ._statistics import ClusterClientStatistics as ClusterClientStatistics
from ._statistics import ConnectionStatistics as ConnectionStatistics
from ._statistics import PumpReport as PumpReport
from ._statistics import ShardedClientStatistics as ShardedClientStatistics
from ._subscription import Subscription as Subscription

#: The batch of the cluster client (the same class as the sharded client's).
ClusterBatch = FanOutBatch

__version__ = "0.1.0"
