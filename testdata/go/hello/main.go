// Command hello is a GOOS=wasip1 test module printing a greeting and its args.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Println("hello from go wasip1")
	fmt.Printf("args: %v\n", os.Args[1:])
}
