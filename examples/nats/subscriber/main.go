// Command subscriber prints every change a CloudKnowledge cluster publishes
// on NATS (ckd with a nats block): one line per change, with the key
// decoded from its headers.
//
//	go run ./examples/nats/subscriber -url nats://127.0.0.1:4222
//
// The nats CLI does the same:
//
//	nats sub 'ck.kv.>' --headers-only
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"

	"github.com/nats-io/nats.go"
)

func main() {
	url := flag.String("url", nats.DefaultURL, "NATS server URL")
	prefix := flag.String("prefix", "ck", "the bridge's subject_prefix")
	flag.Parse()
	nc, err := nats.Connect(*url, nats.Name("ck-subscriber-example"))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	_, err = nc.Subscribe(*prefix+".kv.>", func(m *nats.Msg) {
		h := m.Header
		line := fmt.Sprintf("%s %s version=%s origin=%s", h.Get("Ck-Op"), h.Get("Ck-Key"), h.Get("Ck-Version"), h.Get("Ck-Origin"))
		if h.Get("Ck-Truncated") == "true" {
			line += " (value too large for NATS: fetch it with ckctl get)"
		} else if h.Get("Ck-Op") == "set" {
			line += fmt.Sprintf(" value=%q", m.Data)
		}
		fmt.Println(line)
	})
	if err != nil {
		log.Fatal(err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	<-sig
}
