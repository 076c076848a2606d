"""HR file -> SCIM users -> bulk requests: readers, transforms, validation, the mapping, the
streaming pipeline and the bulk envelope. Pure: no storage, no Graph, no clock."""
