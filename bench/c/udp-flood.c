/* UDP flood for the capture benchmark: RATE datagrams/s of 64 B to 127.0.0.1:PORT for SECONDS,
 * each carrying its sequence number (uint64, little-endian) in its first 8 bytes, paced in 1 ms
 * slices against CLOCK_MONOTONIC; a bound, unread socket takes them (so no ICMP errors). Prints {"sent":N,"seconds":S} when done. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: udp-flood RATE SECONDS PORT\n");
    return 2;
  }
  double rate = atof(argv[1]), seconds = atof(argv[2]);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  /* A bound sink that is never read: no ICMP port unreachable (which would fail our sends). */
  int sink = socket(AF_INET, SOCK_DGRAM, 0);
  if (bind(sink, (struct sockaddr *)&to, sizeof to) < 0) return perror("bind"), 1;
  if (connect(fd, (struct sockaddr *)&to, sizeof to) < 0) return perror("connect"), 1;
  unsigned char payload[64] = {0};
  uint64_t seq = 0, target = (uint64_t)(rate * seconds);
  double start = now(), elapsed;
  while (seq < target) {
    elapsed = now() - start;
    uint64_t due = (uint64_t)((elapsed + 0.001) * rate);
    if (due > target) due = target;
    while (seq < due) {
      memcpy(payload, &seq, 8);
      if (send(fd, payload, sizeof payload, 0) == (ssize_t)sizeof payload) seq++;
    }
    struct timespec pause = {0, 500000};
    if (now() - start < (double)seq / rate) nanosleep(&pause, NULL);
  }
  printf("{\"sent\":%llu,\"seconds\":%.3f}\n", (unsigned long long)seq, now() - start);
  return 0;
}
