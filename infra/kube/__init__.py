"""Reading the cluster, below both the program and the rollout command: kubeconfigs and clients (access),
a Deployment's state and what "complete" and "definitive failure" mean (status), its revisions, the
Cluster a stack runs on (cluster) and its live view through the Kubernetes API (watch)."""
