#!/usr/bin/env bash
# Makes a self-signed certificate for local HTTPS/WSS: certs/cert.pem and certs/key.pem (or into $1), valid
# for localhost and 127.0.0.1. Then: TLS_CERT=certs/cert.pem TLS_KEY=certs/key.pem npm start
set -euo pipefail
out="${1:-certs}"
days="${CERT_DAYS:-365}"
mkdir -p "$out"
openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$days" \
  -keyout "$out/key.pem" -out "$out/cert.pem" \
  -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" 2>/dev/null
chmod 600 "$out/key.pem"
echo "wrote $out/cert.pem and $out/key.pem (self-signed, $days days)"
