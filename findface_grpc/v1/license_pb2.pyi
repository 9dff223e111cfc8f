import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ComponentKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPONENT_KIND_UNSPECIFIED: _ClassVar[ComponentKind]
    COMPONENT_KIND_EXTRACTOR: _ClassVar[ComponentKind]
    COMPONENT_KIND_SHARD: _ClassVar[ComponentKind]
    COMPONENT_KIND_GATEWAY: _ClassVar[ComponentKind]
    COMPONENT_KIND_VIDEO: _ClassVar[ComponentKind]
COMPONENT_KIND_UNSPECIFIED: ComponentKind
COMPONENT_KIND_EXTRACTOR: ComponentKind
COMPONENT_KIND_SHARD: ComponentKind
COMPONENT_KIND_GATEWAY: ComponentKind
COMPONENT_KIND_VIDEO: ComponentKind

class LicenseStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Limits(_message.Message):
    __slots__ = ("faces", "shards", "extractors", "cameras")
    FACES_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    EXTRACTORS_FIELD_NUMBER: _ClassVar[int]
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    faces: int
    shards: int
    extractors: int
    cameras: int
    def __init__(self, faces: _Optional[int] = ..., shards: _Optional[int] = ..., extractors: _Optional[int] = ..., cameras: _Optional[int] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("faces", "shards", "extractors", "faces_revision", "cameras")
    FACES_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    EXTRACTORS_FIELD_NUMBER: _ClassVar[int]
    FACES_REVISION_FIELD_NUMBER: _ClassVar[int]
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    faces: int
    shards: int
    extractors: int
    faces_revision: int
    cameras: int
    def __init__(self, faces: _Optional[int] = ..., shards: _Optional[int] = ..., extractors: _Optional[int] = ..., faces_revision: _Optional[int] = ..., cameras: _Optional[int] = ...) -> None: ...

class LicenseStatusResponse(_message.Message):
    __slots__ = ("valid", "unlicensed_mode", "reason", "licensee", "issued_at", "expires_at", "limits", "usage", "features", "license_id", "source", "checked_at", "leases")
    VALID_FIELD_NUMBER: _ClassVar[int]
    UNLICENSED_MODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LICENSEE_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    LICENSE_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CHECKED_AT_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    unlicensed_mode: bool
    reason: str
    licensee: str
    issued_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    limits: Limits
    usage: Usage
    features: _containers.RepeatedScalarFieldContainer[str]
    license_id: str
    source: str
    checked_at: _timestamp_pb2.Timestamp
    leases: _containers.RepeatedCompositeFieldContainer[Lease]
    def __init__(self, valid: _Optional[bool] = ..., unlicensed_mode: _Optional[bool] = ..., reason: _Optional[str] = ..., licensee: _Optional[str] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., features: _Optional[_Iterable[str]] = ..., license_id: _Optional[str] = ..., source: _Optional[str] = ..., checked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., leases: _Optional[_Iterable[_Union[Lease, _Mapping]]] = ...) -> None: ...

class AcquireLeaseRequest(_message.Message):
    __slots__ = ("kind", "instance_id", "cameras")
    KIND_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    kind: ComponentKind
    instance_id: str
    cameras: int
    def __init__(self, kind: _Optional[_Union[ComponentKind, str]] = ..., instance_id: _Optional[str] = ..., cameras: _Optional[int] = ...) -> None: ...

class Lease(_message.Message):
    __slots__ = ("lease_id", "kind", "instance_id", "expires_at", "renew_interval_s", "grace_period_s", "features", "all_features", "cameras")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    RENEW_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_S_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    ALL_FEATURES_FIELD_NUMBER: _ClassVar[int]
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    kind: ComponentKind
    instance_id: str
    expires_at: _timestamp_pb2.Timestamp
    renew_interval_s: int
    grace_period_s: int
    features: _containers.RepeatedScalarFieldContainer[str]
    all_features: bool
    cameras: int
    def __init__(self, lease_id: _Optional[str] = ..., kind: _Optional[_Union[ComponentKind, str]] = ..., instance_id: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., renew_interval_s: _Optional[int] = ..., grace_period_s: _Optional[int] = ..., features: _Optional[_Iterable[str]] = ..., all_features: _Optional[bool] = ..., cameras: _Optional[int] = ...) -> None: ...

class RenewLeaseRequest(_message.Message):
    __slots__ = ("lease_id", "cameras")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    cameras: int
    def __init__(self, lease_id: _Optional[str] = ..., cameras: _Optional[int] = ...) -> None: ...

class ReleaseLeaseRequest(_message.Message):
    __slots__ = ("lease_id",)
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    def __init__(self, lease_id: _Optional[str] = ...) -> None: ...

class ReleaseLeaseResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReserveFacesRequest(_message.Message):
    __slots__ = ("count", "idempotency_key")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    count: int
    idempotency_key: str
    def __init__(self, count: _Optional[int] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class ReserveFacesResponse(_message.Message):
    __slots__ = ("used", "limit")
    USED_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    used: int
    limit: int
    def __init__(self, used: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class ReleaseFacesRequest(_message.Message):
    __slots__ = ("count", "idempotency_key")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    count: int
    idempotency_key: str
    def __init__(self, count: _Optional[int] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class ReleaseFacesResponse(_message.Message):
    __slots__ = ("used",)
    USED_FIELD_NUMBER: _ClassVar[int]
    used: int
    def __init__(self, used: _Optional[int] = ...) -> None: ...

class ReconcileFacesRequest(_message.Message):
    __slots__ = ("count", "revision")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    count: int
    revision: int
    def __init__(self, count: _Optional[int] = ..., revision: _Optional[int] = ...) -> None: ...

class ReconcileFacesResponse(_message.Message):
    __slots__ = ("applied", "used", "revision")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    applied: bool
    used: int
    revision: int
    def __init__(self, applied: _Optional[bool] = ..., used: _Optional[int] = ..., revision: _Optional[int] = ...) -> None: ...
