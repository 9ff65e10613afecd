// This project's rules for its deployment files (run by scripts/deploy/check.sh):
//   node rules.cjs docker-compose.yml Dockerfile
// Prints every broken rule and exits 1 when there is one.
"use strict";
const fs = require("fs");
const yaml = require("js-yaml");

const [composePath, dockerfilePath] = process.argv.slice(2);
const problems = [];
const fail = (file, message) => problems.push(`${file}: ${message}`);

// --- docker-compose.yml ---------------------------------------------------
const compose = yaml.load(fs.readFileSync(composePath, "utf8"));
const services = compose.services || {};
const secretName = /PASS|SECRET|TOKEN|API_KEYS|CREDENTIAL/i;
// A secret's value: a required variable, or (for optional ones) an empty default.
const fromVariable = /^\$\{[A-Z0-9_]+(:\?[^}]*|:-)\}$/;
const userinfo = /^[a-z][a-z0-9+.-]*:\/\/[^/:@]*:([^@]*)@/i;

for (const [name, service] of Object.entries(services)) {
  const env = service.environment || {};
  const entries = Array.isArray(env)
    ? env.map((e) => e.split(/=(.*)/s).slice(0, 2))
    : Object.entries(env);
  for (const [key, raw] of entries) {
    const value = raw == null ? "" : String(raw);
    if (secretName.test(key) && value !== "" && !fromVariable.test(value)) {
      fail(composePath, `${name}: ${key} must come from a variable (\${${key}:?…}), not be written here`);
    }
    const password = value.match(userinfo);
    if (password && !/^\$\{[A-Z0-9_]+:\?[^}]*\}$/.test(password[1])) {
      fail(composePath, `${name}: ${key} has a password in its URL that is not a required variable (\${VAR:?…})`);
    }
  }
  const image = String(service.image || "");
  if (/rabbitmq/.test(name) || /rabbitmq/.test(image)) {
    if (!Array.isArray(service.profiles) || service.profiles.length === 0) {
      fail(composePath, `${name}: RabbitMQ runs only in a profile that uses it (profiles: [rabbitmq])`);
    }
    if (/management/.test(image)) {
      fail(composePath, `${name}: the management image serves a UI; use a plain image`);
    }
    if ((service.ports || []).length > 0) {
      fail(composePath, `${name}: publishes ports (the management UI, or the broker) to the host`);
    }
  }
  for (const port of service.ports || []) {
    if (/(^|:)15672(:|$)/.test(String(port.published || port))) {
      fail(composePath, `${name}: publishes RabbitMQ's management port 15672`);
    }
  }
}
const server = services.server || {};
const apiKeys = (server.environment || {}).API_KEYS;
if (!apiKeys || !/^\$\{API_KEYS:\?[^}]*\}$/.test(String(apiKeys))) {
  fail(composePath, "server: API_KEYS must be required from the environment (${API_KEYS:?…})");
}

// --- Dockerfile -------------------------------------------------------------
const lines = fs
  .readFileSync(dockerfilePath, "utf8")
  .replace(/\\\n/g, " ")
  .split("\n")
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith("#"));
const stages = [];
for (const line of lines) {
  const [instruction, ...rest] = line.split(/\s+/);
  const args = rest.join(" ");
  if (/^FROM$/i.test(instruction)) {
    stages.push([]);
    const image = rest.find((a) => !a.startsWith("--")) || "";
    if (!/:[^:]+$/.test(image) || /:latest$/.test(image)) {
      fail(dockerfilePath, `FROM ${image}: pin a tag (not latest)`);
    }
  }
  if (stages.length > 0) {
    stages[stages.length - 1].push([instruction.toUpperCase(), args]);
  }
}
const final = stages[stages.length - 1] || [];
const users = final.filter(([i]) => i === "USER").map(([, a]) => a.split(":")[0]);
if (users.length === 0 || ["root", "0"].includes(users[users.length - 1])) {
  fail(dockerfilePath, "the final stage must run as a non-root USER");
}
if (!final.some(([i]) => i === "HEALTHCHECK")) {
  fail(dockerfilePath, "the final stage needs a HEALTHCHECK");
}
if (!final.some(([i, a]) => i === "ENV" && /\bGENERATE_SECRETS=false\b/.test(a))) {
  fail(dockerfilePath, "set ENV GENERATE_SECRETS=false: a container must not print generated keys into its logs");
}

if (problems.length > 0) {
  console.log(problems.join("\n"));
  process.exit(1);
}
console.log(`${composePath}, ${dockerfilePath}: the project's deployment rules hold`);
