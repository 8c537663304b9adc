// Reading the deployment files the way their consumers do: a unit's capability bounding set,
// the capabilities a Kubernetes container adds, and the YAML documents of a manifest.
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';

/** CapabilityBoundingSet= of a unit (every such line; systemd merges them), as CAP_* names. */
export function unitCapabilities(unit: string): string[] {
  const lines = unit.split('\n').filter((l) => l.startsWith('CapabilityBoundingSet='));
  if (lines.length === 0) throw new Error('the unit sets no CapabilityBoundingSet');
  return [...new Set(lines.flatMap((l) => l.slice('CapabilityBoundingSet='.length).trim().split(/\s+/)))].sort();
}

/** Every YAML document of a manifest file. */
export function manifests(path: string): any[] {
  return parseAllDocuments(readFileSync(path, 'utf8')).map((d) => {
    if (d.errors.length > 0) throw new Error(`${path}: ${d.errors[0]!.message}`);
    return d.toJS();
  });
}

/** securityContext.capabilities.add of a container, as CAP_* names (Kubernetes drops the prefix). */
export function containerCapabilities(container: any): string[] {
  return (container.securityContext?.capabilities?.add ?? []).map((c: string) => `CAP_${c}`).sort();
}
