from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class PKIName(_message.Message):
    __slots__ = ("country", "province", "city", "organization", "organizationUnit", "commonName")
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    PROVINCE_FIELD_NUMBER: _ClassVar[int]
    CITY_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATIONUNIT_FIELD_NUMBER: _ClassVar[int]
    COMMONNAME_FIELD_NUMBER: _ClassVar[int]
    country: str
    province: str
    city: str
    organization: str
    organizationUnit: str
    commonName: str
    def __init__(self, country: _Optional[str] = ..., province: _Optional[str] = ..., city: _Optional[str] = ..., organization: _Optional[str] = ..., organizationUnit: _Optional[str] = ..., commonName: _Optional[str] = ...) -> None: ...
