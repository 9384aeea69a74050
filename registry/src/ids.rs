//! The typed ids every crate shares, without libtorch: the evaluation attacks (SPEC §3), the
//! metrics a report prints (the paper's Tables II–IV columns plus the harness's own), and the
//! paper's tables. `harness` builds attacks from [`AttackId`]; `reports` orders, heads and files
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
}

impl AttackId {
    /// Every attack, in the paper's column order (Table II's, then AutoAttack's components,
    /// then Table III's and IV's).
    pub const ALL: [AttackId; 18] = [
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

/// The paper's tables (Xu et al., IEEE TNNLS): I (MINE ablation), II (white-box, the main
/// table), III (SPSA), IV (RayS), V (ablations of the loss), VI (other datasets and models).
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

impl FromStr for PaperTable {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PaperTable::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown paper table '{s}': expected one of I, II, III, IV, V, VI"))
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
        for t in PaperTable::ALL {
            assert_eq!(t.name().parse::<PaperTable>(), Ok(t));
            assert_eq!(serde_json::to_value(t).unwrap(), serde_json::json!(t.name()));
        }
        assert!("pgd21".parse::<AttackId>().unwrap_err().contains("expected one of fgsm, pgd20"));
        assert!("rays".parse::<Metric>().is_err(), "RayS reports as adbd and rob_acc");
    }

    #[test]
    fn the_column_order_is_the_papers() {
        let names: Vec<&str> = Metric::all().iter().map(|m| m.name()).collect();
        assert_eq!(
            names,
            [
                "natural", "fgsm", "pgd20", "pgd100", "pgd_plus", "cw20", "cw100", "bpda", "infopgd20", "aa",
                "apgd_ce", "apgd_t", "fab_t", "square", "spsa128", "spsa256", "spsa512", "spsa1024", "adbd",
                "rob_acc", "worst_case", "mine"
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
