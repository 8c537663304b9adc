// pino JSON logs to stderr; privileged actions and denials are logged with the caller's identity.
import { pino, type Logger } from 'pino';

export function createLogger(level = process.env.SOCKBROKER_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { service: 'sockbroker' } }, pino.destination(2));
}
