// Type declarations of herald.js, the browser client of the herald push gateway.

/** A transport, in the order of preference that `transports` gives. */
export type Transport = "ws" | "sse" | "longpoll" | "poll";

/** The subscriber token, or a function that returns one (called again with `expired: true` when herald says it expired). */
export type TokenSource = string | ((info: { expired: boolean }) => string | Promise<string>);

export interface HeraldOptions {
  /** Transports to try, best first. Default `["ws", "sse", "longpoll", "poll"]`. */
  transports?: Transport[];
  /** Sent as `Authorization: Bearer` on polls, as `?token=` on SSE and the WebSocket upgrade. */
  token?: TokenSource;
  /** Reconnection delay: a random wait in [0, min(cap, base * 2^(n-1))) ms before attempt n. Default `{ base: 500, cap: 30000 }`. */
  backoff?: { base?: number; cap?: number };
  /** ms a connection must stay up for the backoff to start over. Default 10000. */
  healthy?: number;
  /** ms a transport has to show it works once asked (WebSocket `subscribed`, SSE first bytes) before it counts as refused or buffered. Default 3000. */
  probe?: number;
  /** ms to wait for a connection or an HTTP answer before it counts as failed. Default 10000. */
  openTimeout?: number;
  /** ms between WebSocket application pings. Default 15000. */
  ping?: number;
  /** ms a WebSocket pong may take before the connection counts as dead. Default 10000. */
  pongTimeout?: number;
  /** ms of silence (herald sends a heartbeat every 15 s) after which an SSE stream counts as dead. Default 40000. */
  idleTimeout?: number;
  /** Long poll hold asked of the server, in seconds. Default 25. */
  hold?: number;
  /** ms between short polls while nothing is new. Default 2000. */
  pollInterval?: number;
  /** ms on a fallback transport before the better one is tried again (doubling, up to 16x, while it still fails). Default 60000. */
  retryBetter?: number;
}

/** One message, the same on every transport. */
export interface Message {
  /** The channel it was published to. */
  channel: string;
  /** Strictly increasing per channel. */
  id: number;
  /** The event name, or null. */
  event: string | null;
  /** A JSON value when published as JSON (a string on SSE, which does not say), else the text. */
  data: unknown;
  /** Publish time in ms since the Unix epoch; null on SSE, which does not carry it. */
  time: number | null;
  /** Resumes this subscription right after this message: store it and pass it as `since`. */
  cursor: string;
}

/** Messages were missed (`history`), or channels were deleted and left the subscription (`deleted`). */
export interface Gap {
  channels: string[];
  reason: "history" | "deleted";
}

export type State = "connecting" | "connected" | "fallback" | "waiting" | "closed" | "failed";

export interface StateInfo {
  /** The transport the state is about. */
  transport: Transport | null;
  /** Reconnection attempt since the last healthy period ("connecting", "waiting"). */
  attempt?: number;
  /** ms until the next attempt ("waiting"). */
  delay?: number;
  /** Why the previous connection ended ("waiting", "fallback"): refused, buffered, lost, soon, expired. */
  reason?: string;
  /** The refusal that ended the subscription ("failed"), e.g. invalid_channel. */
  error?: { code: string; message: string };
}

export interface SubscribeOptions {
  /** A cursor stored from an earlier message (`message.cursor` or `sub.cursor`): resume right after it. */
  since?: string;
  onMessage?: (message: Message) => void;
  onGap?: (gap: Gap) => void;
  onState?: (state: State, info: StateInfo) => void;
}

export interface Subscription {
  /** The transport in use (or being tried). */
  readonly transport: Transport | null;
  /** The latest state reported to onState. */
  readonly state: State;
  /** The channels still followed (deleted channels leave). */
  readonly channels: string[];
  /** Resumes every channel right after the last message delivered; null before the first position. */
  readonly cursor: string | null;
  close(): void;
}

export const DEFAULTS: Readonly<Required<Omit<HeraldOptions, "token">>>;

export class Herald {
  /** `baseUrl`: herald's public listener, e.g. `https://push.example.com`. */
  constructor(baseUrl: string, options?: HeraldOptions);
  /** Follows one channel, a comma-separated list, or an array of channels. */
  subscribe(channels: string | string[], options?: SubscribeOptions): Subscription;
  /** Closes every subscription. */
  close(): void;
}
