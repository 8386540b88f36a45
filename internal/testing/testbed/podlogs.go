package testbed

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// FollowPodLogs copies the logs of every container of the pods in
// namespace, from when each starts until it ends, into a log directory kept
// when t fails. The kubelet deletes a container's log with its pod, so the
// log of an installer that ran its SIGTERM handling and was removed is
// otherwise gone by the time a test can ask why.
func (c *Cluster) FollowPodLogs(t testing.TB, namespace string) {
	t.Helper()
	dir := newLogDir(t, "pods")
	cs := c.AdminClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		seen := map[string]bool{}
		for ctx.Err() == nil {
			pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
			for _, p := range podsOf(pods, err) {
				for _, st := range p.Status.ContainerStatuses {
					key := fmt.Sprintf("%s_%s_%d", p.Name, st.Name, st.RestartCount)
					if seen[key] || (st.State.Running == nil && st.State.Terminated == nil) {
						continue
					}
					seen[key] = true
					wg.Add(1)
					go func(pod, container, file string) {
						defer wg.Done()
						followLog(ctx, cs, namespace, pod, container, file)
					}(p.Name, st.Name, filepath.Join(dir, key+".log"))
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
}

func podsOf(l *corev1.PodList, err error) []corev1.Pod {
	if err != nil || l == nil {
		return nil
	}
	return l.Items
}

// followLog copies one container's log into file until the container ends
// or ctx does; what cannot be read is said in the file. The kubelet ends a
// follow when the runtime restarts under it (an install restarts it), so
// the log is opened again, skipping the lines already copied.
func followLog(ctx context.Context, cs kubernetes.Interface, namespace, pod, container, file string) {
	f, err := os.Create(file)
	if err != nil {
		return
	}
	defer f.Close()
	copied := 0
	for ctx.Err() == nil {
		done := containerEnded(ctx, cs, namespace, pod, container)
		stream, err := cs.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{Container: container, Follow: !done, Timestamps: true}).Stream(ctx)
		if err == nil {
			sc := bufio.NewScanner(stream)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for n := 0; sc.Scan(); n++ {
				if n >= copied {
					fmt.Fprintln(f, sc.Text())
					copied++
				}
			}
			stream.Close()
		}
		if done || apierrors.IsNotFound(err) {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// containerEnded tells whether the container has terminated or its pod is
// gone: its log is then complete.
func containerEnded(ctx context.Context, cs kubernetes.Interface, namespace, pod, container string) bool {
	p, err := cs.CoreV1().Pods(namespace).Get(ctx, pod, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true
	}
	if err != nil {
		return false
	}
	for _, st := range p.Status.ContainerStatuses {
		if st.Name == container {
			return st.State.Terminated != nil
		}
	}
	return false
}
