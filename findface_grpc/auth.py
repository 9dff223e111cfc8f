"""API tokens: who may call the cluster's public doors, and `findface-token` to manage them.

The public doors are the gateway's gRPC port (FaceService) and the HTTP gateway. The HTTP gateway forwards the
client's `Authorization: Token <key>` header to the gateway as gRPC metadata, so `AuthInterceptor` on the gateway
is the one check for both. The internal services (extractor, shard) take no tokens: they must listen on loopback
or on a private network that only the cluster's own hosts reach, never on an address clients can reach.

Tokens live in the gateway's metadata database, collection `tokens`, one document each:
`_id` = sha256 hex of the token, `name`, `created_at`, `revoked_at` (null while live), and `active_name` (= `name`
while live, removed on revocation; a sparse unique index on it keeps names unique among live tokens, so that
revoking by name means one token). The plaintext is shown once, when created, and stored nowhere: a copy of the
database gives no working key. A plain hash is enough because the keys are 256 random bits, not guessable words.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import logging
import re
import secrets
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timezone

import grpc
import pymongo
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, PyMongoError

from findface_grpc import config as config_mod
from findface_grpc.errors import AlreadyExists, ConfigError, FindFaceError, InvalidArgument, NotFound, Unauthenticated, Unavailable
from findface_grpc.gateway.config import GatewayConfig
from findface_grpc.gateway.metadata import redact
from findface_grpc.observability import metrics
from findface_grpc.outage import OutageBreaker
from findface_grpc.rpc import status_code

log = logging.getLogger(__name__)

COLLECTION = "tokens"
# gRPC metadata keys are lower case; the HTTP gateway sends the client's `Authorization` header under this key.
METADATA_KEY = "authorization"
SCHEME = "Token"
MISSING = "AUTH_FAILED: missing token"
INVALID = "AUTH_FAILED: invalid or revoked token"
# Health checks come from load balancers and orchestrators that hold no token; reflection only describes the API.
OPEN_METHOD_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
ID_LENGTH = 12
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
# token_urlsafe(32) gives 43 characters; anything far longer is not ours and is refused without a lookup.
MAX_TOKEN_LENGTH = 256
# Bounds the cache under a flood of made-up tokens (each distinct one would otherwise add an entry).
CACHE_ENTRIES = 10_000
# How long a token once found valid is still taken as valid while the token store cannot be reached.
OUTAGE_GRACE_S = 600.0


@dataclass(frozen=True)
class TokenInfo:
    id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """The call metadata that authenticates a FaceService call: pass as `metadata=` on each call."""
    return ((METADATA_KEY, f"{SCHEME} {token}"),)


def _utcnow() -> datetime:
    # MongoDB keeps milliseconds; rounding here makes what create() saw equal what list() reads back.
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _info(doc: dict) -> TokenInfo:
    return TokenInfo(id=doc["_id"][:ID_LENGTH], name=doc["name"], created_at=doc["created_at"],
                     revoked_at=doc.get("revoked_at"))


class TokenStore:
    """Tokens in `db[COLLECTION]`. Blocking (pymongo), except `verify_async`, which is safe on an event loop.

    `verify` answers from an in-process cache for `cache_ttl_s`, so a busy gateway does not ask MongoDB on every
    call; the price is that a revocation reaches each gateway process within that many seconds, not at once.
    """

    def __init__(self, db: Database, cache_ttl_s: float = 5.0, executor: Executor | None = None,
                 clock: Callable[[], float] = time.monotonic, outage: OutageBreaker | None = None) -> None:
        """`outage`: the breaker of whatever else uses the same MongoDB in this process (the gateway's metadata
        store), so that one call finding it down spares every other call the wait, whichever store it uses."""
        self.collection = db[COLLECTION]
        self.cache_ttl_s = cache_ttl_s
        self._executor = executor  # None: the event loop's default executor
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, TokenInfo | None]] = OrderedDict()
        self.outage = outage or OutageBreaker("token store (MongoDB)")
        # verify() runs on executor threads as well as the loop's thread.
        self._lock = threading.Lock()

    # ---- management (the CLI and the cluster launcher) ----

    def create(self, name: str) -> str:
        """A new token named `name`; returns the plaintext, which exists nowhere else afterwards."""
        if not NAME_PATTERN.fullmatch(name):
            raise InvalidArgument(f"token name {name!r}: use 1-64 of A-Z a-z 0-9 _ . @ -")
        self.collection.create_index("active_name", unique=True, sparse=True)
        token = secrets.token_urlsafe(32)
        try:
            self.collection.insert_one(
                {"_id": digest(token), "name": name, "active_name": name, "created_at": _utcnow(), "revoked_at": None}
            )
        except DuplicateKeyError:
            raise AlreadyExists(f"a live token named {name!r} exists; revoke it first or pick another name") from None
        log.info("created token %r", name)
        return token

    def list(self) -> list[TokenInfo]:
        return [_info(doc) for doc in self.collection.find({}).sort([("created_at", pymongo.ASCENDING)])]

    def exists(self) -> bool:
        """Whether any token was ever created (revoked ones count)."""
        return self.collection.find_one({}, {"_id": 1}) is not None

    def revoke(self, name_or_id: str) -> list[TokenInfo]:
        """Revoke the live token with this name or id (as `list` shows it); returns what was revoked.

        NotFound when nothing matches; a token already revoked is left as it was and not returned.
        """
        matches = [doc for doc in self.collection.find({"revoked_at": None})
                   if doc["name"] == name_or_id or doc["_id"][:ID_LENGTH] == name_or_id]
        if not matches:
            if any(t.name == name_or_id or t.id == name_or_id for t in self.list()):
                return []
            raise NotFound(f"no token named or with id {name_or_id!r}")
        now = _utcnow()
        revoked = []
        for doc in matches:
            result = self.collection.update_one(
                {"_id": doc["_id"], "revoked_at": None}, {"$set": {"revoked_at": now}, "$unset": {"active_name": ""}}
            )
            if result.modified_count:
                revoked.append(dataclasses.replace(_info(doc), revoked_at=now))
                log.info("revoked token %r (%s)", doc["name"], doc["_id"][:ID_LENGTH])
        with self._lock:
            for doc in matches:
                self._cache.pop(doc["_id"], None)
        return revoked

    # ---- verification (the gateway) ----

    def verify(self, token: str) -> TokenInfo | None:
        """The live token's info, or None for an unknown or revoked one. Unavailable if MongoDB is."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        key = digest(token)
        hit, info = self._cached(key)
        if hit:
            return info
        info = self._lookup(key)
        self._remember(key, info)
        return info

    async def verify_async(self, token: str) -> TokenInfo | None:
        """`verify` for the event loop: a cache hit answers at once, a miss asks MongoDB in the executor."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        key = digest(token)
        hit, info = self._cached(key)
        if hit:
            return info
        info = await asyncio.get_running_loop().run_in_executor(self._executor, self._lookup, key)
        self._remember(key, info)
        return info

    def _lookup(self, key: str) -> TokenInfo | None:
        try:
            self.outage.before_call()
            try:
                doc = self.collection.find_one({"_id": key})
            except PyMongoError as exc:
                self.outage.failed(type(exc).__name__)
                # Not the caller's fault: UNAVAILABLE (retry), not UNAUTHENTICATED (give up).
                raise Unavailable(f"token store (MongoDB) unavailable: {type(exc).__name__}") from exc
        except Unavailable:
            known = self._known_valid(key)
            if known is None:
                raise
            return known
        self.outage.answered()
        if doc is None or doc.get("revoked_at") is not None:
            return None
        return _info(doc)

    def _known_valid(self, key: str) -> TokenInfo | None:
        """A token found valid within OUTAGE_GRACE_S, while the store cannot say otherwise: clients keep working
        through a MongoDB outage, and a revocation made during it takes effect once it is over."""
        with self._lock:
            entry = self._cache.get(key)
        if entry is None or entry[1] is None or entry[0] + OUTAGE_GRACE_S <= self._clock():
            return None
        return entry[1]

    def _cached(self, key: str) -> tuple[bool, TokenInfo | None]:
        with self._lock:
            entry = self._cache.get(key)
            if entry is None or entry[0] <= self._clock():
                # An expired entry stays (the LRU bound removes it) for _known_valid.
                metrics.TOKEN_CACHE.labels("miss").inc()
                return False, None
            metrics.TOKEN_CACHE.labels("hit").inc()
            return True, entry[1]

    def _remember(self, key: str, info: TokenInfo | None) -> None:
        # Unknown tokens are cached too, so that a client retrying a bad key does not reach MongoDB each time.
        with self._lock:
            self._cache[key] = (self._clock() + self.cache_ttl_s, info)
            self._cache.move_to_end(key)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)


async def authenticate(store: TokenStore, metadata: Sequence[tuple[str, str | bytes]] | None) -> TokenInfo:
    """The token a call carries, checked; Unauthenticated (AUTH_FAILED) if it has none or a bad one."""
    value = next((v for k, v in metadata or () if k == METADATA_KEY), None)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not value or not value.strip():
        raise Unauthenticated(MISSING)
    scheme, _, key = value.strip().partition(" ")
    if scheme.lower() != SCHEME.lower() or not key.strip():
        raise Unauthenticated(INVALID)
    info = await store.verify_async(key.strip())
    if info is None:
        raise Unauthenticated(INVALID)
    return info


def _refusal(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that fails the call without running it."""

    async def refuse(request_or_iterator, context):
        await context.abort(code, message)

    if handler.unary_unary:
        factory = grpc.unary_unary_rpc_method_handler
    elif handler.unary_stream:
        factory = grpc.unary_stream_rpc_method_handler
    elif handler.stream_unary:
        factory = grpc.stream_unary_rpc_method_handler
    else:
        factory = grpc.stream_stream_rpc_method_handler
    return factory(refuse, handler.request_deserializer, handler.response_serializer)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Requires `authorization: Token <key>` metadata with a live token on every call but health and reflection."""

    def __init__(self, store: TokenStore) -> None:
        self.store = store

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        try:
            await authenticate(self.store, handler_call_details.invocation_metadata)
        except FindFaceError as exc:
            if isinstance(exc, Unauthenticated):
                log.info("refused %s: %s", method, exc.message)
            else:
                log.warning("cannot check the token of %s: %s", method, exc.message)
            return _refusal(handler, status_code(exc), exc.message)
        return handler


# ---- findface-token ----


@dataclass(frozen=True)
class _TokenCliConfig(GatewayConfig):
    """The gateway's `[gateway]` settings, of which the CLI needs only the metadata store's."""

    def validate(self) -> None:
        # The rest (shards above all) need not be configured where tokens are managed.
        if not self.mongo_uri or not self.mongo_db:
            raise ConfigError("[gateway].mongo_uri and mongo_db must be set")


def gateway_mongo(config_path: str | None = None, mongo_uri: str | None = None,
                  mongo_db: str | None = None) -> GatewayConfig:
    """The gateway's metadata store settings as the gateway itself resolves them (file, FINDFACE_GATEWAY_*)."""
    overrides = {k: v for k, v in {"mongo_uri": mongo_uri, "mongo_db": mongo_db}.items() if v}
    return config_mod.load(_TokenCliConfig, "gateway", config_path, overrides=overrides)


def open_store(cfg: GatewayConfig) -> tuple[pymongo.MongoClient, TokenStore]:
    timeout_ms = int(cfg.mongo_timeout_s * 1000)
    client = pymongo.MongoClient(cfg.mongo_uri, tz_aware=True, serverSelectionTimeoutMS=timeout_ms,
                                 connectTimeoutMS=timeout_ms)
    return client, TokenStore(client[cfg.mongo_db])


def _format_time(value: datetime | None) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if value else "-"


def main(argv: list[str] | None = None) -> int:
    def add_store_options(p: argparse.ArgumentParser, default) -> None:
        p.add_argument("--config", default=default, help="TOML config file (its [gateway] table)")
        p.add_argument("--mongo-uri", default=default, help="MongoDB URI of the gateway's metadata store")
        p.add_argument("--mongo-db", default=default, help="database name (default: the gateway's, 'findface')")

    parser = argparse.ArgumentParser(
        prog="findface-token",
        description="Create, list and revoke the API tokens that the gateway requires "
                    "(metadata 'authorization: Token <key>', HTTP header 'Authorization: Token <key>').",
    )
    add_store_options(parser, None)
    commands = parser.add_subparsers(dest="command", required=True)
    # The options are accepted after the command too; SUPPRESS keeps the subcommand from resetting them.
    create = commands.add_parser("create", help="create a token and print it (it is shown only this once)")
    create.add_argument("name")
    listing = commands.add_parser("list", help="list tokens: id, name, created, revoked")
    revoke = commands.add_parser("revoke", help="revoke a token by name or id")
    revoke.add_argument("name_or_id")
    for sub in (create, listing, revoke):
        add_store_options(sub, argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="findface-token: %(message)s", stream=sys.stderr)

    try:
        cfg = gateway_mongo(args.config, args.mongo_uri, args.mongo_db)
    except ConfigError as exc:
        log.error("%s", exc.message)
        return 2
    client, store = open_store(cfg)
    try:
        if args.command == "create":
            sys.stdout.write(store.create(args.name) + "\n")
        elif args.command == "list":
            for t in store.list():
                sys.stdout.write(f"{t.id}  {t.name:<24} created {_format_time(t.created_at)}  "
                                 f"{'revoked ' + _format_time(t.revoked_at) if t.revoked else 'live'}\n")
        else:
            revoked = store.revoke(args.name_or_id)
            for t in revoked:
                sys.stdout.write(f"revoked {t.id}  {t.name}\n")
            if not revoked:
                log.warning("%r was already revoked", args.name_or_id)
    except FindFaceError as exc:
        log.error("%s", exc.message)
        return 1
    except PyMongoError as exc:
        log.error("metadata store unavailable at %s: %s", redact(cfg.mongo_uri), type(exc).__name__)
        return 1
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
