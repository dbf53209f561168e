/**
 * Prometheus metrics of one node (prom-client) and the HTTP server that exposes them at
 * /metrics, together with a JSON /status for `bulwark status`.
 */
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The metrics a node exports. */
export class NodeMetrics {
  readonly registry = new Registry();
  readonly executed: Counter;
  readonly batches: Counter;
  readonly rejected: Counter<'reason'>;
  readonly view: Gauge;
  readonly executedSeq: Gauge;
  readonly committedSeq: Gauge;
  readonly stableCheckpoint: Gauge;
  readonly queueDepth: Gauge<'peer'>;
  readonly latency: Histogram;
  readonly viewChanges: Counter;
  readonly storageSyncs: Gauge;
  readonly connectedPeers: Gauge;
  readonly inboxMessages: Gauge<'lane'>;
  readonly inboxBytes: Gauge<'lane'>;
  readonly inboxDropped: Counter<'source' | 'reason'>;
  readonly inboxCutOff: Gauge;
  readonly loopDelayMax: Gauge;

  constructor(nodeId: number) {
    this.registry.setDefaultLabels({ node: String(nodeId) });
    collectDefaultMetrics({ register: this.registry, prefix: 'bulwark_process_' });
    const r = [this.registry];
    this.executed = new Counter({ name: 'bulwark_requests_executed_total', help: 'Client requests executed by this node', registers: r });
    this.batches = new Counter({ name: 'bulwark_batches_executed_total', help: 'Batches executed by this node', registers: r });
    this.rejected = new Counter({ name: 'bulwark_rejected_inputs_total', help: 'Inputs dropped, by reason', labelNames: ['reason'], registers: r });
    this.view = new Gauge({ name: 'bulwark_view', help: 'Current view of the order replica', registers: r });
    this.executedSeq = new Gauge({ name: 'bulwark_executed_seq', help: 'Last batch executed', registers: r });
    this.committedSeq = new Gauge({ name: 'bulwark_committed_seq', help: 'Last batch committed by the order replica', registers: r });
    this.stableCheckpoint = new Gauge({ name: 'bulwark_stable_checkpoint_seq', help: 'Sequence number of the last stable order checkpoint', registers: r });
    this.queueDepth = new Gauge({ name: 'bulwark_peer_queue_bytes', help: 'Bytes queued for each peer', labelNames: ['peer'], registers: r });
    this.latency = new Histogram({
      name: 'bulwark_request_latency_seconds',
      help: 'From the first AUTH-REQ this node saw for a request to its execution here',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: r,
    });
    this.viewChanges = new Counter({ name: 'bulwark_view_changes_total', help: 'View changes started by this node, by reason (request_timeout, heartbeat, throughput, unfair, invalid_preprepare, equivocation, new_view_timeout, joined)', labelNames: ['reason'], registers: r });
    this.storageSyncs = new Gauge({ name: 'bulwark_storage_syncs', help: 'fdatasync calls (group commits) so far', registers: r });
    this.connectedPeers = new Gauge({ name: 'bulwark_connected_peers', help: 'Authenticated connections (nodes and clients)', registers: r });
    this.inboxMessages = new Gauge({ name: 'bulwark_inbox_messages', help: 'Messages waiting in the inbox, by lane (self, n<id>, n<id>/low, clients)', labelNames: ['lane'], registers: r });
    this.inboxBytes = new Gauge({ name: 'bulwark_inbox_bytes', help: 'Encoded bytes waiting in the inbox, by lane', labelNames: ['lane'], registers: r });
    this.inboxDropped = new Counter({ name: 'bulwark_inbox_dropped_total', help: 'Messages the inbox dropped, by source (n<id> or clients) and reason', labelNames: ['source', 'reason'], registers: r });
    this.inboxCutOff = new Gauge({ name: 'bulwark_replicas_cut_off', help: 'Replicas disconnected for flooding right now', registers: r });
    this.loopDelayMax = new Gauge({ name: 'bulwark_event_loop_delay_max_seconds', help: 'Longest event-loop delay in the last whole second (how long the node was blocked)', registers: r });
  }
}

/** Serves /metrics (Prometheus text) and /status (JSON from `status()`). */
export async function serveMetrics(o: {
  host: string;
  port: number;
  metrics: NodeMetrics;
  status: (url: URL) => unknown;
  /** `POST /attack` with a JSON body (bench --attack); absent: 404. */
  attack?: (body: unknown) => { status: number; text: string };
}): Promise<Server> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/attack' && req.method === 'POST' && o.attack !== undefined) {
      const attack = o.attack;
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > 4096) req.destroy();
        else chunks.push(c);
      });
      req.on('end', () => {
        let body: unknown;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          res.writeHead(400);
          res.end('bad attack: body is not JSON\n');
          return;
        }
        const r = attack(body);
        res.writeHead(r.status);
        res.end(r.text);
      });
      return;
    }
    if (url.pathname === '/metrics') {
      o.metrics.registry
        .metrics()
        .then((text) => {
          res.writeHead(200, { 'content-type': o.metrics.registry.contentType });
          res.end(text);
        })
        .catch((e: unknown) => {
          res.writeHead(500);
          res.end(String(e));
        });
      return;
    }
    if (url.pathname === '/status') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(o.status(url)));
      return;
    }
    res.writeHead(404);
    res.end('not found: try /metrics or /status\n');
  });
  // Bounded exposure to slow or idle clients of the HTTP port.
  server.headersTimeout = 5_000;
  server.requestTimeout = 10_000;
  server.keepAliveTimeout = 5_000;
  server.maxConnections = 256;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}
