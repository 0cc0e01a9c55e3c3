package main

// listen returns the listeners to serve on: under wasip1 only the runtime can open sockets, so
// they are the preopened ones of WAZERO_LISTEN_FDS.
func listen() ([]listener, error) {
	return preopenedListeners()
}
