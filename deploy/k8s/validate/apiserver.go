package validate

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/kubernetes/pkg/api/legacyscheme"
	podutil "k8s.io/kubernetes/pkg/api/pod"
	"k8s.io/kubernetes/pkg/apis/apps"
	_ "k8s.io/kubernetes/pkg/apis/apps/install"
	appsvalidation "k8s.io/kubernetes/pkg/apis/apps/validation"
	"k8s.io/kubernetes/pkg/apis/batch"
	_ "k8s.io/kubernetes/pkg/apis/batch/install"
	batchvalidation "k8s.io/kubernetes/pkg/apis/batch/validation"
	"k8s.io/kubernetes/pkg/apis/core"
	_ "k8s.io/kubernetes/pkg/apis/core/install"
	corevalidation "k8s.io/kubernetes/pkg/apis/core/validation"
	"k8s.io/kubernetes/pkg/apis/networking"
	_ "k8s.io/kubernetes/pkg/apis/networking/install"
	networkingvalidation "k8s.io/kubernetes/pkg/apis/networking/validation"
	"k8s.io/kubernetes/pkg/apis/policy"
	_ "k8s.io/kubernetes/pkg/apis/policy/install"
	policyvalidation "k8s.io/kubernetes/pkg/apis/policy/validation"
)

// DefaultNamespace is the namespace given to objects without one (what `kubectl apply` does with
// the context's namespace); the overlays set their own.
const DefaultNamespace = "default"

// APIServer runs what the API server runs on a create of each object: its defaulting, the
// conversion to the internal version, the selector a Job's create generates, and the validation
// function of the kind (k8s.io/kubernetes/pkg/apis/<group>/validation). Every field error is
// returned, each naming the object and the field.
func APIServer(objs []Object) []error {
	var errs []error
	for _, o := range objs {
		for _, e := range validateObject(o) {
			errs = append(errs, fmt.Errorf("%s: API validation: %s", o.ID(), e.Error()))
		}
	}
	return errs
}

func validateObject(o Object) field.ErrorList {
	obj := o.Typed.DeepCopyObject()
	legacyscheme.Scheme.Default(obj)
	internalGV := o.GVK.GroupVersion()
	internalGV.Version = runtime.APIVersionInternal
	in, err := legacyscheme.Scheme.ConvertToVersion(obj, internalGV)
	if err != nil {
		return field.ErrorList{field.InternalError(nil, fmt.Errorf("converting to the internal version: %w", err))}
	}
	if m, ok := in.(metav1.Object); ok && m.GetNamespace() == "" {
		m.SetNamespace(DefaultNamespace)
	}
	switch v := in.(type) {
	case *apps.StatefulSet:
		return appsvalidation.ValidateStatefulSet(v, appsvalidation.StatefulSetValidationOptions{},
			podutil.GetValidationOptionsFromPodTemplate(&v.Spec.Template, nil))
	case *batch.Job:
		generateJobSelector(v)
		return batchvalidation.ValidateJobCreate(v, batchvalidation.JobValidationOptions{
			PodValidationOptions:  podutil.GetValidationOptionsFromPodTemplate(&v.Spec.Template, nil),
			RequirePrefixedLabels: true})
	case *core.Service:
		// The service REST's beginCreate (normalizeClusterIPs): the plural field from the singular.
		if v.Spec.ClusterIP != "" && len(v.Spec.ClusterIPs) == 0 {
			v.Spec.ClusterIPs = []string{v.Spec.ClusterIP}
		}
		return corevalidation.ValidateServiceCreate(v)
	case *core.ConfigMap:
		return corevalidation.ValidateConfigMap(v)
	case *core.Secret:
		return corevalidation.ValidateSecret(v)
	case *core.PersistentVolumeClaim:
		return corevalidation.ValidatePersistentVolumeClaim(v, corevalidation.ValidationOptionsForPersistentVolumeClaim(v, nil))
	case *core.Pod:
		return corevalidation.ValidatePodCreate(v, podutil.GetValidationOptionsFromPodSpecAndMeta(&v.Spec, nil, &v.ObjectMeta, nil))
	case *policy.PodDisruptionBudget:
		return policyvalidation.ValidatePodDisruptionBudget(v, policyvalidation.PodDisruptionBudgetValidationOptions{})
	case *networking.NetworkPolicy:
		return networkingvalidation.ValidateNetworkPolicy(v, networkingvalidation.NetworkPolicyValidationOptions{})
	}
	return field.ErrorList{field.NotSupported(field.NewPath("kind"), o.GVK.Kind, []string{"StatefulSet", "Job", "Service", "ConfigMap",
		"Secret", "PersistentVolumeClaim", "Pod", "PodDisruptionBudget", "NetworkPolicy"})}
}

// jobUID is the uid the checks give a Job (the API server gives a new one at create).
const jobUID = types.UID("00000000-0000-4000-8000-000000000000")

// generateJobSelector does what the Job strategy's PrepareForCreate does for a Job without a
// manual selector (k8s.io/kubernetes/pkg/registry/batch/job.generateSelector): a uid, the
// job-name and controller-uid labels on the pod template, and the selector of the uid.
func generateJobSelector(j *batch.Job) {
	if j.Spec.ManualSelector != nil && *j.Spec.ManualSelector {
		return
	}
	j.UID = jobUID
	if j.Spec.Template.Labels == nil {
		j.Spec.Template.Labels = map[string]string{}
	}
	for _, l := range []string{batch.LegacyJobNameLabel, batch.JobNameLabel} {
		if _, ok := j.Spec.Template.Labels[l]; !ok {
			j.Spec.Template.Labels[l] = j.Name
		}
	}
	for _, l := range []string{batch.LegacyControllerUidLabel, batch.ControllerUidLabel} {
		if _, ok := j.Spec.Template.Labels[l]; !ok {
			j.Spec.Template.Labels[l] = string(j.UID)
		}
	}
	if j.Spec.Selector == nil {
		j.Spec.Selector = &metav1.LabelSelector{}
	}
	if j.Spec.Selector.MatchLabels == nil {
		j.Spec.Selector.MatchLabels = map[string]string{}
	}
	if _, ok := j.Spec.Selector.MatchLabels[batch.ControllerUidLabel]; !ok {
		j.Spec.Selector.MatchLabels[batch.ControllerUidLabel] = string(j.UID)
	}
}
