// Command hello is a static native Linux program used as the runc baseline image.
package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	fmt.Println(strings.Join(append([]string{"hello from native"}, os.Args[1:]...), " "))
}
