// The read-ahead file test/msg/read-ahead.test.ts with every socket handed off to this process.
(globalThis as { SOCKBROKER_TEST_HANDOFF?: boolean }).SOCKBROKER_TEST_HANDOFF = true;
await import('./read-ahead.test.js');
