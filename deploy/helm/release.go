package helm

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"helm.sh/helm/v4/pkg/action"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/kube"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// Release is one release of the chart on a cluster, managed through the
// Helm SDK exactly as the helm CLI would (release records in Secrets of
// Namespace, server-side apply, hooks).
type Release struct {
	// Kubeconfig is the kubeconfig file of the cluster.
	Kubeconfig string
	// Namespace holds the release and its namespaced objects (DefaultNamespace if empty).
	Namespace string
	// Name is the release name (DefaultReleaseName if empty).
	Name string
	// Timeout bounds each hook and, with Wait, the wait (5 minutes if zero).
	Timeout time.Duration
	// Wait makes Install and Upgrade wait until the DaemonSets are rolled
	// out, as helm --wait; hooks are always waited for.
	Wait bool
	// Log receives Helm's own log; nil discards it.
	Log *slog.Logger
}

func (r Release) defaults() Release {
	if r.Namespace == "" {
		r.Namespace = DefaultNamespace
	}
	if r.Name == "" {
		r.Name = DefaultReleaseName
	}
	if r.Timeout == 0 {
		r.Timeout = 5 * time.Minute
	}
	if r.Log == nil {
		r.Log = slog.New(slog.DiscardHandler)
	}
	return r
}

func (r Release) config() (*action.Configuration, error) {
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(r.Log.Handler()))
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &r.Kubeconfig
	flags.Namespace = &r.Namespace
	if err := cfg.Init(flags, r.Namespace, "secret"); err != nil {
		return nil, fmt.Errorf("helm configuration for %s: %w", r.Kubeconfig, err)
	}
	return cfg, nil
}

// prepare fills in r's defaults and loads the chart and the Helm
// configuration Install and Upgrade both need.
func (r Release) prepare() (Release, *chart.Chart, *action.Configuration, error) {
	r = r.defaults()
	c, err := Load()
	if err != nil {
		return r, nil, nil, err
	}
	cfg, err := r.config()
	return r, c, cfg, err
}

func (r Release) waitStrategy() kube.WaitStrategy {
	if r.Wait {
		return kube.StatusWatcherStrategy
	}
	return kube.HookOnlyStrategy
}

// Install installs the chart with values merged over values.yaml, as
// `helm install`.
func (r Release) Install(ctx context.Context, values map[string]any) error {
	r, c, cfg, err := r.prepare()
	if err != nil {
		return err
	}
	inst := action.NewInstall(cfg)
	inst.ReleaseName, inst.Namespace, inst.Timeout, inst.WaitStrategy = r.Name, r.Namespace, r.Timeout, r.waitStrategy()
	if _, err := inst.RunWithContext(ctx, c, values); err != nil {
		return fmt.Errorf("helm install %s in %s: %w", r.Name, r.Namespace, err)
	}
	return nil
}

// Upgrade upgrades the release to the chart with values merged over
// values.yaml (not over the last release's values), as `helm upgrade`.
func (r Release) Upgrade(ctx context.Context, values map[string]any) error {
	r, c, cfg, err := r.prepare()
	if err != nil {
		return err
	}
	up := action.NewUpgrade(cfg)
	up.Namespace, up.Timeout, up.WaitStrategy = r.Namespace, r.Timeout, r.waitStrategy()
	if _, err := up.RunWithContext(ctx, r.Name, c, values); err != nil {
		return fmt.Errorf("helm upgrade %s in %s: %w", r.Name, r.Namespace, err)
	}
	return nil
}

// Uninstall uninstalls the release, as `helm uninstall`: the pre-delete
// hook removes Kata from every node first (docs/helm.md). Timeout must
// cover each hook step.
func (r Release) Uninstall(ctx context.Context) error {
	r = r.defaults()
	cfg, err := r.config()
	if err != nil {
		return err
	}
	un := action.NewUninstall(cfg)
	un.Timeout, un.WaitStrategy = r.Timeout, r.waitStrategy()
	done := make(chan error, 1)
	// The SDK's Uninstall takes no context: run it aside so that ctx can
	// at least stop the wait for it.
	go func() {
		_, err := un.Run(r.Name)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("helm uninstall %s in %s: %w", r.Name, r.Namespace, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("helm uninstall %s in %s: %w", r.Name, r.Namespace, ctx.Err())
	}
}
