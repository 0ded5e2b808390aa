"""Numbers the draft fixes: ports, limits and protocol defaults.

Each constant names the draft section that defines it, so the code and the
draft can be checked against each other.
"""

from __future__ import annotations

import hashlib
from typing import Final

# Section 5.1: carriage.
DEFAULT_PORT: Final = 54325
IP_PROTOCOL_NUMBER: Final = 253
MAX_UDP_PAYLOAD: Final = 65507
RECOMMENDED_MAX_PACKET: Final = 1232

# Sections 5.2 and 5.3: SAL header and extensions.
BASE_HEADER_LENGTH: Final = 12
MIN_HEADER_WORDS: Final = 3
MAX_EXTENSIONS: Final = 8
EXTENSION_ALIGNMENT: Final = 4
FIRST_IGNORABLE_EXTENSION_TYPE: Final = 0x80
MAX_SOURCE_ENTRIES: Final = 12
DEFAULT_HOP_LIMIT: Final = 8
NONCE_LENGTH: Final = 8

# Section 5.16: SAL timers and queues (seconds unless stated).
RTO_INITIAL: Final = 1.0
RTO_MIN: Final = 0.2
RTO_MAX: Final = 60.0
MAX_CONTROL_RETRANSMITS: Final = 8
TIMEWAIT_DURATION: Final = 60.0
FINWAIT2_TIMEOUT: Final = 60.0
REQUEST_TIMEOUT: Final = 3.0
MAX_REQUEST_QUEUE: Final = 128
MAX_DELAY_QUEUE: Final = 1024
DELAY_TIMEOUT: Final = 2.0
FLOW_ID_REUSE_DELAY: Final = 2 * TIMEWAIT_DURATION
CHALLENGE_ACK_INTERVAL: Final = 1.0
DEMUX_PRIORITY: Final = 255
DEMUX_WEIGHT: Final = 1

# Section 5.14.2: stream transport.
STREAM_WINDOW_UNIT: Final = 1024
STREAM_DEFAULT_WINDOW: Final = 256 * 1024
STREAM_MAX_ACK_DELAY: Final = 0.2
STREAM_DUPACK_THRESHOLD: Final = 3
STREAM_MAX_RETRANSMITS: Final = 8

# Section 6.1: identifiers.
SERVICE_ID_LENGTH: Final = 32
NODE_ID_LENGTH: Final = 32
KEY_LENGTH: Final = 32
SIGNATURE_LENGTH: Final = 64
BLOCK_BITS: Final = 3
BLOCK_SIZE: Final = 1 << BLOCK_BITS
MAX_NAME_LENGTH: Final = 253
SERVALDHT_SERVICE_ID: Final = hashlib.sha256(b"ServalDHT").digest()

# Sections 6.2 to 6.4: ServalDHT messages.
DHT_VERSION: Final = 1
DHT_HEADER_LENGTH: Final = 60
TOKEN_LENGTH: Final = 16
TRANSACTION_ID_LENGTH: Final = 8
MAX_DHT_MESSAGE: Final = 1184
MAX_NODES_PER_MESSAGE: Final = 16
MAX_ADDRESS_TOKENS: Final = 8
MAX_ERROR_REASON: Final = 256
MAX_STATUS_LENGTH: Final = 1024

# Section 6.7: records.
MAX_ENDPOINTS: Final = 16
MAX_RECORD_LIFETIME: Final = 86400
DEFAULT_RECORD_LIFETIME: Final = 3600
MAX_CLOCK_SKEW: Final = 300
RECORD_SIGNING_CONTEXT: Final = b"ServalDHT record v1\x00"
MESSAGE_SIGNING_CONTEXT: Final = b"ServalDHT message v1\x00"

# Section 6.13: overlay and abuse-resistance defaults.
DEFAULT_SUCCESSOR_LIST_LENGTH: Final = 8
MIN_SUCCESSOR_LIST_LENGTH: Final = 3
DEFAULT_REPLICAS: Final = 3
REQUEST_TIMEOUT_DHT: Final = 1.0
REQUEST_RETRIES: Final = 2
STABILIZE_INTERVAL: Final = 5.0
FIX_FINGERS_INTERVAL: Final = 10.0
CHECK_PREDECESSOR_INTERVAL: Final = 5.0
TOKEN_SECRET_LIFETIME: Final = 300.0
AMPLIFICATION_FACTOR: Final = 3
RATE_LIMIT_PER_SOURCE: Final = 100
RATE_LIMIT_BURST: Final = 200
MAX_RECORDS_PER_OWNER: Final = 64
MAX_RECORDS_PER_NODE: Final = 100_000
MAX_SUCCESSOR_LIST_LENGTH: Final = 16
STABILIZE_JITTER: Final = 0.2
MAX_LOOKUP_REFERRALS: Final = 64
REFER_NODES: Final = 3
REPLICA_GRACE_PERIOD: Final = 60.0
NEGATIVE_CACHE_LIFETIME: Final = 30.0
RATE_LIMITED_ERROR_INTERVAL: Final = 1.0

# Appendix C.4: the test services of a conformance target, one serviceID block.
CONFORMANCE_BLOCK: Final = bytes.fromhex(
    "850d0c46088da5cb22120be53bf7d190c49114058d226e856ff2e016b2b354e8"
)  # SHA-256("Serval conformance") with the three low bits cleared
ECHO_STREAM_SERVICE_ID: Final = CONFORMANCE_BLOCK[:31] + bytes([CONFORMANCE_BLOCK[31] | 0])
ECHO_DATAGRAM_SERVICE_ID: Final = CONFORMANCE_BLOCK[:31] + bytes([CONFORMANCE_BLOCK[31] | 1])
HOLD_STREAM_SERVICE_ID: Final = CONFORMANCE_BLOCK[:31] + bytes([CONFORMANCE_BLOCK[31] | 2])
INITIATOR_SERVICE_ID: Final = CONFORMANCE_BLOCK[:31] + bytes([CONFORMANCE_BLOCK[31] | 3])
UNBOUND_SERVICE_ID: Final = CONFORMANCE_BLOCK[:31] + bytes([CONFORMANCE_BLOCK[31] | 7])
