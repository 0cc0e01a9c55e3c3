// Command pause blocks until SIGINT or SIGTERM and then exits 0, standing in
// for the Kubernetes pause image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	<-ch
}
