// Command tern-pause does nothing until SIGTERM or SIGINT, then exits 0. In the compose
// cluster it holds the network namespace that every daemon joins (as the pause container of a
// Kubernetes pod does), so that stopping or restarting any one daemon leaves the others'
// network, and the ports published from it, in place. See docker-compose.yml.
package main

import (
	"context"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
}
