//! Mix-minus: for each participant, the sum of everyone else (a phone caller must not hear
//! themselves echoed back through the room).
//!
//! O(N) per frame: the total is summed once in 32 bits, then each listener gets the total
//! minus their own input, saturated to 16 bits (saturation rather than soft clipping: it only
//! acts when several loud talkers overlap, and it keeps the exact-sum property everywhere
//! else). The scratch buffer is sized at construction; nothing allocates per frame.

use thiserror::Error;

/// Why a frame could not be mixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MixError {
    /// An input or output is not one frame long.
    #[error("expected frames of {expected} samples, got {got}")]
    FrameLength {
        /// The mixer's frame length.
        expected: usize,
        /// The offending length.
        got: usize,
    },
    /// Inputs and outputs differ in number.
    #[error("{inputs} inputs but {outputs} outputs")]
    CountMismatch {
        /// Inputs given.
        inputs: usize,
        /// Outputs given.
        outputs: usize,
    },
}

/// A mix-minus mixer for frames of a fixed length (e.g. 960 samples: 20 ms at 48 kHz).
#[derive(Debug, Clone)]
pub struct MixMinus {
    total: Vec<i32>,
}

impl MixMinus {
    /// A mixer for frames of `frame_len` samples.
    pub fn new(frame_len: usize) -> MixMinus {
        MixMinus {
            total: vec![0; frame_len],
        }
    }

    /// The frame length.
    pub fn frame_len(&self) -> usize {
        self.total.len()
    }

    fn check(&self, len: usize) -> Result<(), MixError> {
        if len != self.total.len() {
            return Err(MixError::FrameLength {
                expected: self.total.len(),
                got: len,
            });
        }
        Ok(())
    }

    fn sum(&mut self, inputs: &[&[i16]]) -> Result<(), MixError> {
        self.total.fill(0);
        for input in inputs {
            self.check(input.len())?;
            for (t, &s) in self.total.iter_mut().zip(input.iter()) {
                *t += i32::from(s);
            }
        }
        Ok(())
    }

    /// For each `i`, writes into `outputs[i]` the sum of all inputs but `inputs[i]`. A
    /// participant who only listens passes a silent frame.
    pub fn mix_minus(
        &mut self,
        inputs: &[&[i16]],
        outputs: &mut [&mut [i16]],
    ) -> Result<(), MixError> {
        if inputs.len() != outputs.len() {
            return Err(MixError::CountMismatch {
                inputs: inputs.len(),
                outputs: outputs.len(),
            });
        }
        for out in outputs.iter() {
            self.check(out.len())?;
        }
        self.sum(inputs)?;
        for (input, output) in inputs.iter().zip(outputs.iter_mut()) {
            for ((o, &own), &t) in output.iter_mut().zip(input.iter()).zip(&self.total) {
                *o = saturate(t - i32::from(own));
            }
        }
        Ok(())
    }

    /// Writes the sum of all inputs into `output` (a listener who is not an input, e.g. the
    /// phone hearing the room's participants).
    pub fn mix_all(&mut self, inputs: &[&[i16]], output: &mut [i16]) -> Result<(), MixError> {
        self.check(output.len())?;
        self.sum(inputs)?;
        for (o, &t) in output.iter_mut().zip(&self.total) {
            *o = saturate(t);
        }
        Ok(())
    }
}

fn saturate(v: i32) -> i16 {
    v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_listener_gets_exactly_the_others_sum() {
        let frame = 160;
        let inputs: Vec<Vec<i16>> = (0..5)
            .map(|p| {
                (0..frame)
                    .map(|i| ((i as i32 * (p + 3) * 37) % 4001 - 2000) as i16)
                    .collect()
            })
            .collect();
        let refs: Vec<&[i16]> = inputs.iter().map(|v| v.as_slice()).collect();
        let mut outs = vec![vec![0i16; frame]; 5];
        let mut out_refs: Vec<&mut [i16]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
        let mut mixer = MixMinus::new(frame);
        mixer.mix_minus(&refs, &mut out_refs).unwrap();
        for (listener, out) in outs.iter().enumerate() {
            for i in 0..frame {
                let expected: i32 = (0..5)
                    .filter(|&p| p != listener)
                    .map(|p| i32::from(inputs[p][i]))
                    .sum();
                assert_eq!(
                    i32::from(out[i]),
                    expected,
                    "listener {listener} sample {i}"
                );
            }
        }
        let mut all = vec![0i16; frame];
        mixer.mix_all(&refs, &mut all).unwrap();
        for i in 0..frame {
            let expected: i32 = inputs.iter().map(|v| i32::from(v[i])).sum();
            assert_eq!(i32::from(all[i]), expected);
        }
    }

    #[test]
    fn clipping_saturates() {
        let loud = [30_000i16, -30_000, 20_000];
        let quiet = [0i16; 3];
        let inputs: [&[i16]; 4] = [&loud, &loud, &loud, &quiet];
        let mut outs = [[0i16; 3]; 4];
        let [a, b, c, d] = &mut outs;
        let mut mixer = MixMinus::new(3);
        mixer
            .mix_minus(
                &inputs,
                &mut [&mut a[..], &mut b[..], &mut c[..], &mut d[..]],
            )
            .unwrap();
        // A loud listener hears two loud others: 60000 → 32767, −60000 → −32768, 40000 → 32767.
        assert_eq!(outs[0], [i16::MAX, i16::MIN, i16::MAX]);
        // The quiet one hears three: the same saturation, no wrap-around.
        assert_eq!(outs[3], [i16::MAX, i16::MIN, i16::MAX]);
    }

    #[test]
    fn wrong_shapes_are_errors() {
        let mut mixer = MixMinus::new(4);
        let a = [0i16; 4];
        let short = [0i16; 3];
        let mut o1 = [0i16; 4];
        assert_eq!(
            mixer.mix_minus(&[&a, &a], &mut [&mut o1[..]]),
            Err(MixError::CountMismatch {
                inputs: 2,
                outputs: 1
            })
        );
        assert_eq!(
            mixer.mix_minus(&[&short], &mut [&mut o1[..]]),
            Err(MixError::FrameLength {
                expected: 4,
                got: 3
            })
        );
        assert!(mixer.mix_all(&[&a], &mut [0i16; 5]).is_err());
        assert!(mixer.mix_all(&[], &mut o1).is_ok());
        assert_eq!(o1, [0; 4]);
        assert_eq!(mixer.frame_len(), 4);
    }
}
