// Synthetic frames for the capture tests: Ethernet/IPv4/UDP with a payload, checksums left 0
// (readers do not verify them).
export function udpFrame(src: string, dst: string, sport: number, dport: number, payload: Buffer): Buffer {
  const ip = (a: string) => Buffer.from(a.split('.').map(Number));
  const eth = Buffer.from('020000000002020000000001' + '0800', 'hex');
  const iph = Buffer.alloc(20);
  iph[0] = 0x45;
  iph.writeUInt16BE(20 + 8 + payload.length, 2);
  iph[8] = 64;
  iph[9] = 17;
  ip(src).copy(iph, 12);
  ip(dst).copy(iph, 16);
  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(sport, 0);
  udp.writeUInt16BE(dport, 2);
  udp.writeUInt16BE(8 + payload.length, 4);
  return Buffer.concat([eth, iph, udp, payload]);
}
