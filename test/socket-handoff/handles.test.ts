// The conformance file test/socket/handles.test.ts with every socket handed off to this process.
(globalThis as { SOCKBROKER_TEST_HANDOFF?: boolean }).SOCKBROKER_TEST_HANDOFF = true;
await import('../socket/handles.test.js');
