// Ready-to-paste shipper configurations, with this server's address filled in. The key stays an
// environment variable: a snippet pasted into a ticket or a repository must not leak it.

const KEY_ENV = "ASTRALOG_INGEST_KEY";

export function snippets(origin = location.origin) {
  const url = new URL(origin);
  const tls = url.protocol === "https:";
  const port = url.port || (tls ? "443" : "80");
  return [
    {
      id: "curl",
      label: "curl",
      note: "One JSON event, or many as NDJSON (one per line). A 2xx means the events are on disk.",
      code: `export ${KEY_ENV}=alk_…   # the key of this source

curl -sS -X POST ${origin}/v1/ingest \\
  -H "Authorization: Bearer $${KEY_ENV}" \\
  -H 'Content-Type: application/json' \\
  -d '{"message":"user signed in","level":"info","service":"checkout","user_id":42}'`,
    },
    {
      id: "vector",
      label: "Vector",
      note: "vector.yaml: an HTTP sink sending newline-delimited JSON, gzip-compressed.",
      code: `sinks:
  astralog:
    type: http
    inputs: ["app_logs"]          # your source or transform ids
    uri: ${origin}/v1/ingest
    method: post
    compression: gzip
    encoding:
      codec: json
    framing:
      method: newline_delimited
    auth:
      strategy: bearer
      token: "\${${KEY_ENV}}"
    batch:
      max_bytes: 4000000
      timeout_secs: 1`,
    },
    {
      id: "fluentbit",
      label: "Fluent Bit",
      note: "fluent-bit.conf: the http output in JSON Lines format.",
      code: `[OUTPUT]
    Name              http
    Match             *
    Host              ${url.hostname}
    Port              ${port}
    URI               /v1/ingest
    Format            json_lines
    Json_date_key     timestamp
    Json_date_format  iso8601
    Header            Authorization Bearer \${${KEY_ENV}}
    Compress          gzip
    tls               ${tls ? "On" : "Off"}
    Retry_Limit       False`,
    },
    {
      id: "otel",
      label: "OpenTelemetry Collector",
      note: "collector.yaml: the otlphttp exporter posts OTLP logs to /v1/logs.",
      code: `exporters:
  otlphttp/astralog:
    logs_endpoint: ${origin}/v1/logs
    compression: gzip
    headers:
      Authorization: "Bearer \${env:${KEY_ENV}}"

service:
  pipelines:
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlphttp/astralog]`,
    },
    {
      id: "syslogng",
      label: "syslog-ng",
      note: "syslog-ng.conf: the http() destination, one JSON object per line, batched.",
      code: `destination d_astralog {
  http(
    url("${origin}/v1/ingest")
    method("POST")
    headers("Authorization: Bearer \`${KEY_ENV}\`", "Content-Type: application/x-ndjson")
    body("$(format-json timestamp=\${ISODATE} host=\${HOST} service=\${PROGRAM} level=\${LEVEL} message=\${MESSAGE})")
    body-suffix("\\n")
    batch-lines(500)
    batch-timeout(1000)
  );
};

log { source(s_src); destination(d_astralog); };`,
    },
  ];
}
