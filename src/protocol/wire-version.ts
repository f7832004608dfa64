/** The wire versions (docs/wire-format.md): what gatewire sends, and what 0.1 sent. */
export const WIRE_VERSION = 2;
/** The version gatewire 0.1 speaks (no sequence, no time; replayable). */
export const LEGACY_WIRE_VERSION = 1;
