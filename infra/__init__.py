"""rolling: a web service on EKS Fargate (or a local cluster), shipped by rolling update."""
