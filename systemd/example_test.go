package systemd_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/kata-deploy/kata-deploy/systemd"
)

// Restart containerd on the host mounted at /host, only if it has not been
// restarted since its config was written. (Compiled, not run: it needs a
// host's systemd.)
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sd, err := systemd.Dial(ctx, "/host")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sd.Close()
	fi, err := os.Stat("/host/etc/containerd/config.toml")
	if err != nil {
		fmt.Println(err)
		return
	}
	st, decision, err := sd.RestartIfNeeded(ctx, "containerd.service", fi.ModTime())
	if err != nil {
		fmt.Println(err) // names the unit, the job result and the unit's state
		return
	}
	fmt.Println(decision.Restarted, decision.Reason, st.ActiveEnter)
}
