/** The peer transport: Raft messages and peer RPCs between members (see transport.ts). */
export { decodeMessage, encodeMessage, MESSAGE_CODEC_VERSION, PeerCodecError } from "./codec.js";
export {
  anonymousRequest,
  DISCOVERY_REQUEST_KIND,
  type DiscoveredCluster,
  discoverCluster,
  parseClusterInfo,
} from "./discovery.js";
export { MAX_FRAME_BYTES, PROTOCOL_VERSION } from "./frame.js";
export {
  type PeerFaults,
  type PeerFaultsReport,
  PeerRequestError,
  type PeerRequestErrorCode,
  type PeerStats,
  PeerTransport,
  type PeerTransportOptions,
} from "./transport.js";
