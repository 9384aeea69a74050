//! The typed ids every crate shares, without libtorch: the evaluation attacks (SPEC §3), the
//! metrics a report prints (the paper's Tables II–IV columns plus the harness's own), the
//! paper's tables, and the method kinds, datasets and architectures a run config names. `harness` builds attacks from [`AttackId`]; `reports` orders, heads and files
//! cells by [`Metric`] and [`PaperTable`]. Each id is spelled as a string in exactly one place
//! (its `name`), which is also its serde and command-line form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The evaluation attacks a preset or `infoat eval` can name (SPEC §3; paper §4.1, Tables II–IV).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum AttackId {
    /// FGSM, one step of eps.
    Fgsm,
    /// PGD-20, step eps/4, uniform start.
    Pgd20,
    /// PGD-100, step eps/4, uniform start.
    Pgd100,
    /// PGD+: 5 restarts × 40 steps of 0.01, any-iterate.
    #[cfg_attr(feature = "clap", value(name = "pgd_plus"))]
    PgdPlus,
    /// CW∞-20: PGD-20 on the margin loss, κ = 50.
    Cw20,
    /// CW∞-100.
    Cw100,
    /// BPDA: PGD-20 through 5-bit depth reduction, straight-through gradient.
    Bpda,
    /// InfoPGD-20: PGD-20 on paper eq. 18, λ = 2.5.
    Infopgd20,
    /// APGD-CE: 100 iterations on the cross-entropy (AutoAttack's first component).
    #[cfg_attr(feature = "clap", value(name = "apgd_ce"))]
    ApgdCe,
    /// APGD-T: targeted DLR, 9 targets × 100 iterations.
    #[cfg_attr(feature = "clap", value(name = "apgd_t"))]
    ApgdT,
    /// FAB-T: targeted minimal-distortion attack, 9 targets × 100 iterations.
    #[cfg_attr(feature = "clap", value(name = "fab_t"))]
    FabT,
    /// Square: score-based random search, 5,000 queries, p_init 0.8.
    Square,
    /// AutoAttack standard: apgd_ce → apgd_t → fab_t → square on still-robust points.
    Aa,
    /// SPSA with 128 model evaluations per gradient estimate (paper Table III), 100 iterations.
    Spsa128,
    /// SPSA with 256 evaluations per estimate.
    Spsa256,
    /// SPSA with 512 evaluations per estimate.
    Spsa512,
    /// SPSA with 1,024 evaluations per estimate.
    Spsa1024,
    /// RayS, hard-label (paper Table IV): boundary distance (ADBD) and robust accuracy.
    Rays,
    /// Adversarial images someone else's attack produced, imported in RobustBench's
    /// external-evaluation layout and verified with the forward pass (`infoat evidence
    /// import`, issue 21); never run, so not offered on the command line.
    #[cfg_attr(feature = "clap", value(skip))]
    External,
}

impl AttackId {
    /// Every attack, in the paper's column order (Table II's, then AutoAttack's components,
    /// then Table III's and IV's).
    pub const ALL: [AttackId; 19] = [
        AttackId::Fgsm,
        AttackId::Pgd20,
        AttackId::Pgd100,
        AttackId::PgdPlus,
        AttackId::Cw20,
        AttackId::Cw100,
        AttackId::Bpda,
        AttackId::Infopgd20,
        AttackId::Aa,
        AttackId::ApgdCe,
        AttackId::ApgdT,
        AttackId::FabT,
        AttackId::Square,
        AttackId::Spsa128,
        AttackId::Spsa256,
        AttackId::Spsa512,
        AttackId::Spsa1024,
        AttackId::Rays,
        AttackId::External,
    ];

    /// The id in records, reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            AttackId::Fgsm => "fgsm",
            AttackId::Pgd20 => "pgd20",
            AttackId::Pgd100 => "pgd100",
            AttackId::PgdPlus => "pgd_plus",
            AttackId::Cw20 => "cw20",
            AttackId::Cw100 => "cw100",
            AttackId::Bpda => "bpda",
            AttackId::Infopgd20 => "infopgd20",
            AttackId::ApgdCe => "apgd_ce",
            AttackId::ApgdT => "apgd_t",
            AttackId::FabT => "fab_t",
            AttackId::Square => "square",
            AttackId::Aa => "aa",
            AttackId::Spsa128 => "spsa128",
            AttackId::Spsa256 => "spsa256",
            AttackId::Spsa512 => "spsa512",
            AttackId::Spsa1024 => "spsa1024",
            AttackId::Rays => "rays",
            AttackId::External => "external",
        }
    }

    /// How the paper heads the attack's column.
    pub fn header(self) -> &'static str {
        match self {
            AttackId::Fgsm => "FGSM",
            AttackId::Pgd20 => "PGD-20",
            AttackId::Pgd100 => "PGD-100",
            AttackId::PgdPlus => "PGD+",
            AttackId::Cw20 => "CW∞-20",
            AttackId::Cw100 => "CW∞-100",
            AttackId::Bpda => "BPDA",
            AttackId::Infopgd20 => "InfoPGD-20",
            AttackId::ApgdCe => "APGD-CE",
            AttackId::ApgdT => "APGD-T",
            AttackId::FabT => "FAB-T",
            AttackId::Square => "Square",
            AttackId::Aa => "AA",
            AttackId::Spsa128 => "SPSA-128",
            AttackId::Spsa256 => "SPSA-256",
            AttackId::Spsa512 => "SPSA-512",
            AttackId::Spsa1024 => "SPSA-1024",
            AttackId::Rays => "RayS",
            AttackId::External => "External",
        }
    }

    /// True for the black-box attacks (paper Tables III and IV), which see only outputs.
    pub fn is_black_box(self) -> bool {
        self.black_box_table().is_some()
    }

    /// The paper's table for a black-box attack: III for SPSA, IV for RayS; `None` for the
    /// white-box attacks, whose cells stay in the table of the run they evaluate.
    pub fn black_box_table(self) -> Option<PaperTable> {
        match self {
            AttackId::Spsa128 | AttackId::Spsa256 | AttackId::Spsa512 | AttackId::Spsa1024 => Some(PaperTable::III),
            AttackId::Rays => Some(PaperTable::IV),
            _ => None,
        }
    }
}

impl fmt::Display for AttackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AttackId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AttackId::ALL.into_iter().find(|a| a.name() == s).ok_or_else(|| {
            let names: Vec<&str> = AttackId::ALL.iter().map(|a| a.name()).collect();
            format!("unknown attack '{s}': expected one of {}", names.join(", "))
        })
    }
}

/// A metric a report cell holds: clean accuracy, an attack's robust accuracy, RayS's two
/// Table IV numbers, the per-example worst case over a suite, or an analysis' MINE estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Clean accuracy (the paper's "Natural" column).
    Natural,
    /// Robust accuracy under an attack (RayS's under [`Metric::RobAcc`]).
    Attack(AttackId),
    /// RayS's average decision-boundary distance (Table IV).
    Adbd,
    /// RayS's robust accuracy at eps (Table IV's "Rob. Acc.").
    RobAcc,
    /// The per-example worst case over an evaluation's attacks.
    WorstCase,
    /// A MINE mutual-information estimate (Table I's rows).
    Mine,
}

impl Metric {
    /// Every metric in the paper's column order: Natural, the attacks in [`AttackId::ALL`]'s
    /// order (RayS as ADBD and Rob. Acc.), then the worst case and MINE.
    pub fn all() -> Vec<Metric> {
        std::iter::once(Metric::Natural)
            .chain(AttackId::ALL.into_iter().filter(|a| *a != AttackId::Rays).map(Metric::Attack))
            .chain([Metric::Adbd, Metric::RobAcc, Metric::WorstCase, Metric::Mine])
            .collect()
    }

    /// The metric an attack's robust accuracy reports under: its own, RayS's as
    /// [`Metric::RobAcc`] (Table IV's column).
    pub fn robust(attack: AttackId) -> Metric {
        if attack == AttackId::Rays {
            Metric::RobAcc
        } else {
            Metric::Attack(attack)
        }
    }

    /// The metric's position in [`Metric::all`]: reports sort columns by it.
    pub fn rank(self) -> usize {
        Metric::all().iter().position(|m| *m == self).unwrap_or(usize::MAX)
    }

    /// The metric in records and JSON reports (`natural`, `pgd20`, `adbd`, …).
    pub fn name(self) -> &'static str {
        match self {
            Metric::Natural => "natural",
            Metric::Attack(a) => a.name(),
            Metric::Adbd => "adbd",
            Metric::RobAcc => "rob_acc",
            Metric::WorstCase => "worst_case",
            Metric::Mine => "mine",
        }
    }

    /// How the paper heads the metric's column.
    pub fn header(self) -> &'static str {
        match self {
            Metric::Natural => "Natural",
            Metric::Attack(a) => a.header(),
            Metric::Adbd => "ADBD",
            Metric::RobAcc => "Rob. Acc.",
            Metric::WorstCase => "worst_case",
            Metric::Mine => "mine",
        }
    }

    /// True for a distance (RayS's ADBD), false for an accuracy.
    pub fn is_distance(self) -> bool {
        self == Metric::Adbd
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Metric::all().into_iter().find(|m| m.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Metric::all().iter().map(|m| m.name()).collect();
            format!("unknown metric '{s}': expected one of {}", names.join(", "))
        })
    }
}

impl Serialize for Metric {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Metric {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The sanity checks an evaluation can trip (the harness's `sanity` module says how each is
/// computed). A tripped check marks the evaluation *flagged* wherever it is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SanityCheck {
    /// An iterative attack leaves more examples robust than FGSM.
    IterativeWeakerThanFgsm,
    /// PGD-100 / CW-100 leave more examples robust than PGD-20 / CW-20.
    MoreStepsWeaker,
    /// PGD-20 at a large eps leaves too many examples correct.
    LargeEpsNotBroken,
    /// Two forward passes on the same inputs differ.
    RandomizedOutputs,
    /// The cross-entropy input gradient is exactly zero for too many examples.
    ZeroGradients,
    /// Robust accuracy rises somewhere as the radius grows (issue 22's eps curve).
    EpsCurveNotMonotone,
    /// Robust accuracy at the largest radius of the eps curve is not zero.
    EpsCurveNotZero,
    /// Robust accuracy still falls between the two largest budgets of the budget curve: the
    /// number has not converged.
    BudgetNotConverged,
}

impl SanityCheck {
    /// Every check.
    pub const ALL: [SanityCheck; 8] = [
        SanityCheck::IterativeWeakerThanFgsm,
        SanityCheck::MoreStepsWeaker,
        SanityCheck::LargeEpsNotBroken,
        SanityCheck::RandomizedOutputs,
        SanityCheck::ZeroGradients,
        SanityCheck::EpsCurveNotMonotone,
        SanityCheck::EpsCurveNotZero,
        SanityCheck::BudgetNotConverged,
    ];

    /// The check's name in records and reports.
    pub fn name(self) -> &'static str {
        match self {
            SanityCheck::IterativeWeakerThanFgsm => "iterative_weaker_than_fgsm",
            SanityCheck::MoreStepsWeaker => "more_steps_weaker",
            SanityCheck::LargeEpsNotBroken => "large_eps_not_broken",
            SanityCheck::RandomizedOutputs => "randomized_outputs",
            SanityCheck::ZeroGradients => "zero_gradients",
            SanityCheck::EpsCurveNotMonotone => "eps_curve_not_monotone",
            SanityCheck::EpsCurveNotZero => "eps_curve_not_zero",
            SanityCheck::BudgetNotConverged => "budget_not_converged",
        }
    }
}

impl fmt::Display for SanityCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The per-example indicators of attack failure (Pintor et al., "Indicators of Attack Failure",
/// NeurIPS 2022) an evaluation counts for each attack, over the examples the attack left robust.
/// How each is computed, with its thresholds, is in the harness's `diagnostics` module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Indicator {
    /// An iterate of the attack was misclassified, yet the point it returned is not.
    SilentSuccess,
    /// The attack's loss was still rising over the last part of its run.
    IncompleteOptimization,
    /// The input gradient of the attack's loss is zero or not finite at the example.
    UnavailableGradients,
    /// The loss varies strongly under small random noise around the example.
    UnstablePredictions,
    /// The same attack with an unbounded radius (the whole [0, 1] box) still leaves the
    /// example correct.
    UnconstrainedFailure,
}

impl Indicator {
    /// Every indicator, in the order reports print them.
    pub const ALL: [Indicator; 5] = [
        Indicator::SilentSuccess,
        Indicator::IncompleteOptimization,
        Indicator::UnavailableGradients,
        Indicator::UnstablePredictions,
        Indicator::UnconstrainedFailure,
    ];

    /// The indicator's name in records, JSON and reports.
    pub fn name(self) -> &'static str {
        match self {
            Indicator::SilentSuccess => "silent_success",
            Indicator::IncompleteOptimization => "incomplete_optimization",
            Indicator::UnavailableGradients => "unavailable_gradients",
            Indicator::UnstablePredictions => "unstable_predictions",
            Indicator::UnconstrainedFailure => "unconstrained_failure",
        }
    }
}

impl fmt::Display for Indicator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The planted-vulnerability self-tests (after Zimmermann et al., "Increasing Confidence in
/// Adversarial Robustness Evaluations", NeurIPS 2022): classifiers derived from the evaluated
/// model for which an adversarial example provably exists inside the ball of every test
/// example. The harness's `diagnostics::planted` module builds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlantedTest {
    /// A readout on the model's logits fooled by a planted corner of the ball (the
    /// binarization test).
    Binarization,
    /// The same readout with its logits scaled so that softmax saturates (cross-entropy
    /// gradients vanish).
    LogitScaled,
    /// The same readout behind an input quantization (zero gradients almost everywhere).
    InputQuantized,
}

impl PlantedTest {
    /// Every test, in the order reports print them.
    pub const ALL: [PlantedTest; 3] =
        [PlantedTest::Binarization, PlantedTest::LogitScaled, PlantedTest::InputQuantized];

    /// The test's name in records, JSON and reports.
    pub fn name(self) -> &'static str {
        match self {
            PlantedTest::Binarization => "binarization",
            PlantedTest::LogitScaled => "logit_scaled",
            PlantedTest::InputQuantized => "input_quantized",
        }
    }
}

impl fmt::Display for PlantedTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The paper's tables (Xu et al., IEEE TNNLS): I (MINE ablation), II (white-box, the main
/// table, ResNet-18), III (SPSA), IV (RayS), V (white-box, WRN-34-10), VI (extra unlabelled
/// data, WRN-28-10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PaperTable {
    /// Table I.
    I,
    /// Table II.
    II,
    /// Table III.
    III,
    /// Table IV.
    IV,
    /// Table V.
    V,
    /// Table VI.
    VI,
}

impl PaperTable {
    /// Every table, in the paper's order.
    pub const ALL: [PaperTable; 6] =
        [PaperTable::I, PaperTable::II, PaperTable::III, PaperTable::IV, PaperTable::V, PaperTable::VI];

    /// The table's number, 1 to 6.
    pub fn number(self) -> usize {
        self as usize + 1
    }

    /// The table's roman numeral, as records and reports spell it.
    pub fn name(self) -> &'static str {
        match self {
            PaperTable::I => "I",
            PaperTable::II => "II",
            PaperTable::III => "III",
            PaperTable::IV => "IV",
            PaperTable::V => "V",
            PaperTable::VI => "VI",
        }
    }
}

impl fmt::Display for PaperTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `II`, `ii`, `2`, `table2` or `Table 2`: the table as the paper prints it or by number.
impl FromStr for PaperTable {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let t = t.strip_prefix("table").or_else(|| t.strip_prefix("Table")).unwrap_or(t).trim();
        PaperTable::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(t) || t.parse() == Ok(p.number()))
            .ok_or_else(|| format!("unknown paper table '{s}': the paper has Tables 1-6 (I-VI); e.g. 2 or II"))
    }
}

/// An id enum of the run configs: each variant's config spelling (`name`, also its serde and
/// `FromStr` form) and the paper's spelling in tables (`label`), written once, here.
macro_rules! config_id {
    ($(#[$doc:meta])* $ty:ident, $what:literal, $pointer:literal,
     { $($(#[$vdoc:meta])* $variant:ident => $name:literal, $label:literal;)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $ty {
            $($(#[$vdoc])* $variant,)+
        }

        impl $ty {
            /// Every variant, in the paper's order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The spelling in configs, records and on the command line.
            pub fn name(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }

            /// The paper's spelling, for table rows and headings.
            pub fn label(self) -> &'static str {
                match self { $($ty::$variant => $label),+ }
            }

            #[doc = concat!("The ", $what, " a resolved run config names (its `", $pointer, "`), if it is one of these.")]
            pub fn of_config(config: &serde_json::Value) -> Option<$ty> {
                config.pointer($pointer)?.as_str()?.parse().ok()
            }

            #[doc = concat!("The paper's spelling of the ", $what, " `id`; an id that is none of these (an external model's, a newer harness's) is shown as it is.")]
            pub fn label_of(id: &str) -> String {
                id.parse::<$ty>().map_or_else(|_| id.to_string(), |v| v.label().to_string())
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::ALL.iter().copied().find(|v| v.name() == s).ok_or_else(|| {
                    let names: Vec<&str> = $ty::ALL.iter().map(|v| v.name()).collect();
                    format!(concat!("unknown ", $what, " '{}': expected one of {}"), s, names.join(", "))
                })
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

config_id!(
    /// A training method (`[method] kind`; SPEC §2, paper §3 and Table II's rows).
    MethodKind, "method kind", "/method/kind", {
        /// Standard training on clean data.
        Natural => "natural", "Natural";
        /// GanDef.
        Gandef => "gandef", "GanDef";
        /// Madry et al.'s PGD adversarial training.
        At => "at", "AT";
        /// TRADES.
        Trades => "trades", "TRADES";
        /// MART.
        Mart => "mart", "MART";
        /// MART+ (MART with the paper's modification).
        MartPlus => "mart_plus", "MART+";
        /// InfoAT (paper eq. 17).
        Infoat => "infoat", "InfoAT";
    }
);

config_id!(
    /// A dataset (`[data] dataset`; SPEC §1).
    DatasetId, "dataset", "/data/dataset", {
        /// MNIST.
        Mnist => "mnist", "MNIST";
        /// Fashion-MNIST.
        FashionMnist => "fashion_mnist", "Fashion-MNIST";
        /// CIFAR-10.
        Cifar10 => "cifar10", "CIFAR-10";
        /// CIFAR-100.
        Cifar100 => "cifar100", "CIFAR-100";
        /// SVHN.
        Svhn => "svhn", "SVHN";
    }
);

config_id!(
    /// An architecture (`[model] arch`; SPEC §4).
    ArchId, "architecture", "/model/arch", {
        /// TRADES' SmallCNN (MNIST, Fashion-MNIST).
        SmallCnn => "smallcnn", "SmallCNN";
        /// CIFAR ResNet-18 (Table II).
        ResNet18 => "resnet18", "ResNet-18";
        /// WideResNet-34-10 (Table V).
        Wrn34x10 => "wrn34_10", "WRN-34-10";
        /// WideResNet-28-10 (Table VI).
        Wrn28x10 => "wrn28_10", "WRN-28-10";
        /// RobustBench's PreActResNet-18 (model-zoo checkpoints; issue 23).
        PreActResNet18 => "preact_resnet18", "PreActResNet-18";
        /// WideResNet-34-15 (RobustBench's `WideResNet`, the TRADES network).
        Wrn34x15 => "wrn34_15", "WRN-34-15";
        /// WideResNet-34-20.
        Wrn34x20 => "wrn34_20", "WRN-34-20";
        /// WideResNet-70-16.
        Wrn70x16 => "wrn70_16", "WRN-70-16";
        /// RobustBench's DeepMind-style `DMWideResNet`-28-10 (Swish, normalisation inside).
        DmWrn28x10 => "dm_wrn28_10", "DM-WRN-28-10";
        /// `DMWideResNet`-34-20.
        DmWrn34x20 => "dm_wrn34_20", "DM-WRN-34-20";
        /// `DMWideResNet`-70-16.
        DmWrn70x16 => "dm_wrn70_16", "DM-WRN-70-16";
        /// `DMWideResNet`-106-16.
        DmWrn106x16 => "dm_wrn106_16", "DM-WRN-106-16";
        /// RobustBench's DeepMind-style `DMPreActResNet`-18 (Swish, normalisation inside).
        DmPreActResNet18 => "dm_preact_resnet18", "DM-PreActResNet-18";
    }
);

impl ArchId {
    /// The table whose white-box layout models of this architecture fill: V for WRN-34-10, VI
    /// for WRN-28-10, II for ResNet-18, the CPU architectures and the model zoo's.
    pub fn whitebox_table(self) -> PaperTable {
        match self {
            ArchId::Wrn34x10 => PaperTable::V,
            ArchId::Wrn28x10 => PaperTable::VI,
            _ => PaperTable::II,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_strings_and_serde() {
        for a in AttackId::ALL {
            assert_eq!(a.name().parse::<AttackId>(), Ok(a));
            assert_eq!(serde_json::to_value(a).unwrap(), serde_json::json!(a.name()));
        }
        for m in Metric::all() {
            assert_eq!(m.name().parse::<Metric>(), Ok(m));
            let json = serde_json::to_value(m).unwrap();
            assert_eq!(serde_json::from_value::<Metric>(json).unwrap(), m);
        }
        for c in SanityCheck::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), serde_json::json!(c.name()));
        }
        for t in PaperTable::ALL {
            assert_eq!(t.name().parse::<PaperTable>(), Ok(t));
            assert_eq!(serde_json::to_value(t).unwrap(), serde_json::json!(t.name()));
        }
        for &k in MethodKind::ALL {
            assert_eq!(k.name().parse::<MethodKind>(), Ok(k));
            assert_eq!(serde_json::from_value::<MethodKind>(serde_json::to_value(k).unwrap()).unwrap(), k);
        }
        for &d in DatasetId::ALL {
            assert_eq!(d.name().parse::<DatasetId>(), Ok(d));
        }
        for &a in ArchId::ALL {
            assert_eq!(a.name().parse::<ArchId>(), Ok(a));
        }
        let config = serde_json::json!({"method": {"kind": "mart_plus"}, "data": {"dataset": "cifar100"},
                                        "model": {"arch": "wrn28_10"}});
        assert_eq!(MethodKind::of_config(&config), Some(MethodKind::MartPlus));
        assert_eq!(DatasetId::of_config(&config), Some(DatasetId::Cifar100));
        assert_eq!(ArchId::of_config(&config).map(ArchId::whitebox_table), Some(PaperTable::VI));
        assert_eq!(MethodKind::of_config(&serde_json::json!({"method": {"kind": "new_one"}})), None);
        assert_eq!(MethodKind::label_of("mart_plus"), "MART+");
        for (text, table) in
            [("2", PaperTable::II), ("ii", PaperTable::II), ("table6", PaperTable::VI), ("Table 4", PaperTable::IV)]
        {
            assert_eq!(text.parse::<PaperTable>(), Ok(table), "{text}");
        }
        assert_eq!(PaperTable::V.number(), 5);
        assert!("7".parse::<PaperTable>().unwrap_err().contains("Tables 1-6"));
        assert_eq!(ArchId::label_of("external"), "external");
        assert!("svhm".parse::<DatasetId>().unwrap_err().contains("unknown dataset 'svhm': expected one of mnist"));
        assert!("pgd21".parse::<AttackId>().unwrap_err().contains("expected one of fgsm, pgd20"));
        assert!("rays".parse::<Metric>().is_err(), "RayS reports as adbd and rob_acc");
    }

    #[test]
    fn the_column_order_is_the_papers() {
        let names: Vec<&str> = Metric::all().iter().map(|m| m.name()).collect();
        assert_eq!(
            names,
            [
                "natural",
                "fgsm",
                "pgd20",
                "pgd100",
                "pgd_plus",
                "cw20",
                "cw100",
                "bpda",
                "infopgd20",
                "aa",
                "apgd_ce",
                "apgd_t",
                "fab_t",
                "square",
                "spsa128",
                "spsa256",
                "spsa512",
                "spsa1024",
                "external",
                "adbd",
                "rob_acc",
                "worst_case",
                "mine"
            ]
        );
        assert!(Metric::Natural.rank() < Metric::Attack(AttackId::Fgsm).rank());
        assert!(Metric::Attack(AttackId::Aa).rank() < Metric::Attack(AttackId::Spsa128).rank());
    }

    #[test]
    fn black_box_attacks_file_into_tables_three_and_four() {
        let black: Vec<AttackId> = AttackId::ALL.into_iter().filter(|a| a.is_black_box()).collect();
        assert_eq!(
            black,
            [AttackId::Spsa128, AttackId::Spsa256, AttackId::Spsa512, AttackId::Spsa1024, AttackId::Rays]
        );
        assert_eq!(AttackId::Spsa512.black_box_table(), Some(PaperTable::III));
        assert_eq!(AttackId::Rays.black_box_table(), Some(PaperTable::IV));
        assert_eq!(AttackId::Aa.black_box_table(), None);
    }
}
